"""Optimizer pages: viewers read, operators apply/dismiss/run; HTMX fragments poll a run until it ends."""

from __future__ import annotations

import json
import re

import pytest

from monitoring.models import Target
from optimizer.charts import before_after_data, before_after_figure
from optimizer.evidence import evidence_table
from optimizer.models import OptimizationRun, Recommendation
from optimizer.services.runs import run_create, run_execute
from tests.optimizer.conftest import make_dead_tuples, make_target

HTMX = {"HTTP_HX_REQUEST": "true"}


def _recommendation(target, **fields):
    defaults = {
        "tuner": "indexes",
        "fingerprint": f"fp-{fields.get('title', 't')}",
        "category": "missing_index",
        "title": "Create index on public.t (a)",
        "statement": 'CREATE INDEX CONCURRENTLY "pp_t_a_idx" ON "public"."t" ("a")',
        "priority": 70,
    }
    return Recommendation.objects.create(target=target, **{**defaults, **fields})


def test_optimizer_page_lists_recommendations_by_priority_and_the_tuners(viewer_client, pg18):
    target = make_target(pg18)
    _recommendation(target, title="second", priority=20)
    _recommendation(target, title="first", priority=90)
    response = viewer_client.get("/optimizer/")
    assert response.status_code == 200
    html = response.content.decode()
    assert html.index("first") < html.index("second")
    assert 'data-testid="tuner-vacuum"' in html and 'data-testid="tuner-indexes"' in html
    assert "Apply" not in html  # viewers read only


def test_viewers_cannot_apply_dismiss_or_run(viewer_client, pg18):
    target = make_target(pg18)
    recommendation = _recommendation(target)
    assert viewer_client.post(f"/optimizer/recommendations/{recommendation.id}/apply/").status_code == 403
    assert viewer_client.post(f"/optimizer/recommendations/{recommendation.id}/dismiss/").status_code == 403
    assert viewer_client.post("/optimizer/tuners/vacuum/run/", {"target": target.id}).status_code == 403


def test_apply_answers_a_polling_status_fragment_and_dismiss_replaces_the_row_with_what_happened(operator_client, pg18):
    target = make_target(pg18)
    recommendation = _recommendation(target)
    response = operator_client.post(f"/optimizer/recommendations/{recommendation.id}/apply/", **HTMX)
    assert response.status_code == 200
    html = response.content.decode()
    run = OptimizationRun.objects.get(recommendation=recommendation)
    assert f'hx-get="/optimizer/runs/{run.id}/?fragment=status"' in html and 'hx-trigger="every 2s"' in html
    assert 'data-status="pending"' in html
    again = operator_client.post(f"/optimizer/recommendations/{recommendation.id}/apply/", **HTMX)
    assert again.status_code == 422 and "already being applied" in again.content.decode()

    other = _recommendation(target, title="other")
    gone = operator_client.post(f"/optimizer/recommendations/{other.id}/dismiss/", **HTMX)
    dismissed_row = gone.content.decode()
    assert gone.status_code == 200
    assert f'id="recommendation-{other.id}"' in dismissed_row and 'role="status"' in dismissed_row
    assert "“other”" in dismissed_row and "dismissed" in dismissed_row
    other.refresh_from_db()
    assert other.status == "dismissed"


def test_a_finished_run_stops_the_polling_and_shows_its_before_after_chart(operator_client, pg18):
    make_dead_tuples(pg18, "public", "view_dead", rows=2000, deleted=1500)
    target = make_target(pg18)
    run = run_create(
        tuner="vacuum",
        target=target,
        trigger="operator",
        actor=None,
        dry_run=False,
        params={"min_dead_tuples": 100, "tables": ["public.view_dead"]},
    )
    run = run_execute(run_id=run.id)
    fragment = operator_client.get(f"/optimizer/runs/{run.id}/?fragment=status", **HTMX)
    assert fragment.status_code == 286  # htmx stops polling
    assert 'data-status="succeeded"' in fragment.content.decode()
    page = operator_client.get(f"/optimizer/runs/{run.id}/")
    assert page.status_code == 200 and 'data-testid="before-after"' in page.content.decode()

    data = before_after_data(run)
    assert data.labels == ["public.view_dead"]
    assert data.before[0] >= 1500 and data.after[0] <= 75
    figure = before_after_figure(data)
    assert [trace["name"] for trace in figure["data"]] == ["before", "after"]
    assert figure["data"][0]["y"] == data.before


def test_run_now_from_the_page_starts_a_dry_run(operator_client, pg18):
    target = make_target(pg18)
    page = operator_client.get("/optimizer/").content.decode()
    assert 'name="target" id="run-target-vacuum"' in page and "kind=postgres" in page  # a name search
    response = operator_client.post("/optimizer/tuners/vacuum/run/", {"target": target.name, "dry_run": "on"}, **HTMX)
    assert response.status_code == 200
    run = OptimizationRun.objects.get(target=target)
    assert run.dry_run and run.trigger == "operator" and run.started_by_name == "oscar-operator"
    bad = operator_client.post("/optimizer/tuners/nope/run/", {"target": target.id}, **HTMX)
    assert bad.status_code == 422 and "Unknown tuner" in bad.content.decode()


def test_the_database_page_shows_a_dozen_targets_and_opens_any_other_by_name(viewer_client):
    Target.objects.bulk_create(Target(name=f"db-{i:02d}", kind="postgres") for i in range(20))
    Target.objects.filter(name="db-15").update(pinned=True)
    page = viewer_client.get("/optimizer/database/").content.decode()
    chips = re.findall(r'<a class="chip[^"]*" href="/optimizer/database/\d+/">([^<]+)</a>', page)
    assert chips == ["db-15", *(f"db-{i:02d}" for i in range(11))]  # pinned first
    assert 'data-testid="target-search"' in page and 'placeholder="Another of 20 PostgreSQL targets' in page
    found = viewer_client.get("/optimizer/database/", {"target": "db-17"}).content.decode()
    assert "<h1>Database: db-17</h1>" in found and 'class="chip active" href' in found
    assert viewer_client.get("/optimizer/database/", {"target": "nope"}).status_code == 404
    assert viewer_client.get("/optimizer/database/", {"target": "db\x00"}).status_code == 404


def test_the_log_is_searchable(viewer_client, pg18):
    target = make_target(pg18, name="searchable-target")
    for tables in (["public.alpha_table"], ["public.beta_table"]):
        run = run_create(
            tuner="vacuum", target=target, trigger="api", actor=None, dry_run=True, params={"tables": tables}
        )
        run_execute(run_id=run.id)
    OptimizationRun.objects.filter(params__tables=["public.beta_table"]).update(summary="beta only")
    response = viewer_client.get("/optimizer/log/?q=beta")
    assert response.status_code == 200
    html = response.content.decode()
    assert "1 run" in html and "beta only" in html
    assert viewer_client.get("/optimizer/log/?status=bogus").status_code == 200


def test_database_page_shows_advice_and_vacuum_status_of_a_target(operator_client, viewer_client, pg18):
    make_dead_tuples(pg18, "public", "page_dead", rows=30000, deleted=29000)
    target = make_target(pg18)
    _recommendation(target, category="unused_index", title="Drop unused index public.x")
    response = operator_client.get(f"/optimizer/database/{target.id}/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Drop unused index public.x" in html
    assert "public.page_dead" in html
    # A viewer sees the stored advice; reading the target live is for operators (an outbound connection).
    seen = viewer_client.get(f"/optimizer/database/{target.id}/").content.decode()
    assert "Drop unused index public.x" in seen and "public.page_dead" not in seen and "operators only" in seen
    assert viewer_client.get("/optimizer/cache/").status_code == 200


def test_operators_edit_a_tuner_schedule_with_a_maintenance_window(operator_client, viewer_client):
    from django_celery_beat.models import PeriodicTask

    from core.services import schedule_sync_defaults
    from optimizer.tuners.vacuum import VacuumTuner

    schedule_sync_defaults()
    task = PeriodicTask.objects.get(name=VacuumTuner.schedule.name)
    url = f"/optimizer/schedules/{task.id}/"
    assert viewer_client.post(url, {"crontab": "0 1 * * *"}).status_code == 403
    bad = operator_client.post(url, {"crontab": "99 1 * *", "maintenance_window": ""}, **HTMX)
    assert bad.status_code == 422 and "A crontab has 5 fields" in bad.content.decode()
    bad_window = operator_client.post(url, {"crontab": "0 1 * * *", "maintenance_window": "late"}, **HTMX)
    assert bad_window.status_code == 422 and "01:00-05:00" in bad_window.content.decode()
    ok = operator_client.post(
        url, {"crontab": "15 1 * * 1", "maintenance_window": "01:00-05:00", "dry_run": "on"}, **HTMX
    )
    assert ok.status_code == 200 and "saved" in ok.content.decode()
    task.refresh_from_db()
    assert (task.crontab.minute, task.crontab.hour, task.crontab.day_of_week) == ("15", "1", "1")
    assert json.loads(task.kwargs) == {"tuner": "vacuum", "dry_run": True, "maintenance_window": "01:00-05:00"}
    form = operator_client.get("/optimizer/").content.decode()
    form = form[form.index(f'hx-post="/optimizer/schedules/{task.id}/"') :]
    assert 'value="01:00-05:00"' in form.split("</form>")[0]  # the edit form shows what is saved
    assert 'name="dry_run" checked' in form.split("</form>")[0]


def test_evidence_rows_name_the_queries_and_give_units():
    recommendation = Recommendation(
        evidence={"queries": [{"queryid": 42, "query": "SELECT * FROM orders WHERE customer_id = $1"}]}
    )
    run = OptimizationRun(
        tuner="indexes",
        action=OptimizationRun.Action.APPLY,
        status=OptimizationRun.Status.SUCCEEDED,
        dry_run=False,
        recommendation=recommendation,
        evidence_before={"index_bytes": 0, "queries_mean_ms": {"42": 12.5}},
        evidence_after={"index_bytes": 1536000, "queries_mean_ms": {"42": 0.25}},
    )
    table = evidence_table(run)
    rows = {row.label: (row.before, row.after) for row in table.rows}
    assert rows["Index size"] == ("0 bytes", "1.5 MB")
    assert rows["Queries mean time: query “SELECT * FROM orders WHERE customer_id = $1”"] == ("12.5 ms", "0.25 ms")
    assert table.has_after and table.after_note == ""
    dry = OptimizationRun(tuner="vacuum", action="run", status="succeeded", dry_run=True, evidence_before={"tables": 3})
    assert evidence_table(dry).after_note == "Not measured after (dry run): nothing was changed."


def test_an_index_advice_lists_the_queries_it_serves(viewer_client, pg18):
    target = make_target(pg18)
    queries = [
        {
            "queryid": 7,
            "query": "SELECT * FROM t WHERE a = $1 AND s = 'lost'",
            "mean_time_ms": 41.5,
            "total_time_ms": 830,
            "cost_before": 4210.4,
            "cost_after": 12.25,
            "constant": "s = 'lost'",
        }
    ]
    evidence = {"queries": queries, "size": "1.5 MB", "set_size": "4.0 MB"}
    _recommendation(target, evidence=evidence, estimated_impact="frees 1.5 MB")
    html = viewer_client.get("/optimizer/").content.decode()
    served = html[html.index('data-testid="served-queries"') :]
    assert "Serves 1 query" in served and "SELECT * FROM t WHERE a = $1 AND s = &#x27;lost&#x27;" in served
    assert "41.50 ms" in served and "not applied" in served
    assert "4210 → 12" in served and "(with s = &#x27;lost&#x27;)" in served
    assert "Estimated size 1.5 MB; the advised set is 4.0 MB in all." in served


def test_schedules_read_as_words_and_the_last_run_says_what_started_it(viewer_client, pg18):
    from core.services import schedule_sync_defaults
    from optimizer.tuners.vacuum import VacuumTuner

    schedule_sync_defaults()
    target = make_target(pg18)
    run_execute(run_id=run_create(tuner="vacuum", target=target, trigger="operator", actor=None, dry_run=True).id)
    html = viewer_client.get("/optimizer/").content.decode()
    assert "(m/h/dM/MY/d)" not in html
    tuner_row = html[html.index('data-testid="tuner-vacuum"') :].split("</tr>")[0]
    minute, hour = VacuumTuner.schedule.crontab.split()[:2]
    assert f"cron: {minute} {hour} " in tuner_row and "At " in tuner_row
    assert f"Operator (system) on {target.name}" in tuner_row
    assert "Last run by beat" in html  # the schedules table counts beat's runs only, and says so


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("broker_down")
def test_with_the_task_queue_down_the_buttons_say_so_and_leave_nothing_pending(operator_client, pg18):
    target = make_target(pg18)
    recommendation = Recommendation.objects.create(
        target=target, tuner="indexes", fingerprint="fp-q", category="invalid_index", title="Drop it",
        statement="SELECT 1",
    )  # fmt: skip
    apply = operator_client.post(f"/optimizer/recommendations/{recommendation.id}/apply/", **HTMX)
    assert apply.status_code == 503 and apply["X-Perfpilot-Fragment"] == "error"
    assert "The task queue is unavailable" in apply.content.decode()
    run = operator_client.post("/optimizer/tuners/vacuum/run/", {"target": target.id, "dry_run": "on"}, **HTMX)
    assert run.status_code == 503 and "nothing was queued" in run.content.decode()
    plain = operator_client.post("/optimizer/tuners/vacuum/run/", {"target": target.id}, follow=True)
    assert plain.status_code == 200 and "The task queue is unavailable" in plain.content.decode()
    recommendation.refresh_from_db()
    assert recommendation.status == "open"
    assert set(OptimizationRun.objects.values_list("status", flat=True)) == {"failed"}
