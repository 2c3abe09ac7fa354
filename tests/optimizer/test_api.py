"""The optimizer API: viewers read, operators act; apply and execute go through the real Celery worker."""

from __future__ import annotations

import itertools

import pytest

from monitoring.models import Target
from optimizer.models import OptimizationRun, Recommendation
from tests.optimizer.conftest import make_dead_tuples, make_target, wait_for

API = "/api/v1/performance"


def _recommendation(target, **fields) -> Recommendation:
    defaults = {
        "tuner": "indexes",
        "fingerprint": f"fp-{target.id}-{fields.get('title', 'x')}",
        "category": "invalid_index",
        "title": "Drop the index",
        "statement": "SELECT 1",
        "priority": 50,
    }
    return Recommendation.objects.create(target=target, **{**defaults, **fields})


def test_recommendations_are_listed_by_priority_for_viewers(anonymous_client, viewer_auth, pg18):
    target = make_target(pg18)
    _recommendation(target, title="low", priority=10)
    _recommendation(target, title="high", priority=90)
    _recommendation(target, title="gone", priority=99, status="dismissed")
    response = anonymous_client.get(f"{API}/recommendations", **viewer_auth)
    assert response.status_code == 200
    assert [r["title"] for r in response.json()] == ["high", "low"]
    assert response.json()[0]["target"] == target.name
    dismissed = anonymous_client.get(f"{API}/recommendations?status=dismissed", **viewer_auth).json()
    assert [r["title"] for r in dismissed] == ["gone"]


@pytest.mark.parametrize(
    ("query", "field"),
    [("status=bogus", "status"), ("category=bogus", "category")],
)
def test_bad_filters_are_400_naming_the_field(anonymous_client, viewer_auth, query, field):
    response = anonymous_client.get(f"{API}/recommendations?{query}", **viewer_auth)
    assert response.status_code == 400
    assert response.json()["field"] == field


@pytest.mark.parametrize("path", ["recommendations", "optimization/report"])
@pytest.mark.parametrize("limit", ["0", "501", "99999999999999999999999"])
def test_a_limit_outside_its_published_bounds_is_a_422_naming_it(anonymous_client, viewer_auth, path, limit):
    response = anonymous_client.get(f"{API}/{path}?limit={limit}", **viewer_auth)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "limit"]


def test_viewers_cannot_act_and_anonymous_users_cannot_read(anonymous_client, viewer_auth, pg18):
    target = make_target(pg18)
    recommendation = _recommendation(target)
    assert anonymous_client.get(f"{API}/recommendations").status_code == 401
    for path in (f"recommendations/{recommendation.id}/apply", f"recommendations/{recommendation.id}/dismiss"):
        response = anonymous_client.post(f"{API}/{path}", content_type="application/json", **viewer_auth)
        assert response.status_code == 403
        assert "operator" in response.json()["detail"]
    body = {"tuners": ["vacuum"], "targets": [target.id]}
    assert (
        anonymous_client.post(f"{API}/optimization/execute", body, "application/json", **viewer_auth).status_code == 403
    )


def test_dismiss_takes_an_entry_off_the_list(anonymous_client, operator_auth, pg18):
    recommendation = _recommendation(make_target(pg18))
    response = anonymous_client.post(f"{API}/recommendations/{recommendation.id}/dismiss", **operator_auth)
    assert response.status_code == 200
    assert response.json()["status"] == "dismissed"
    assert response.json()["status_changed_by"] == "oscar-operator"
    assert anonymous_client.get(f"{API}/recommendations", **operator_auth).json() == []
    again = anonymous_client.post(f"{API}/recommendations/{recommendation.id}/apply", **operator_auth)
    assert again.status_code == 409 and "only open ones" in again.json()["detail"]
    assert anonymous_client.post(f"{API}/recommendations/999999/dismiss", **operator_auth).status_code == 404


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"tuners": ["nope"], "targets": ["x"]}, "targets", "No target"),
        ({"tuners": ["nope"], "targets": ["@target"]}, "tuners", "Unknown tuner"),
        ({"tuners": ["vacuum"], "targets": ["@target"], "params": {"bogus": 1}}, "bogus", "no parameter"),
        (
            {"tuners": ["vacuum"], "targets": ["@target"], "params": {"maintenance_window": "soon"}},
            "maintenance_window",
            "01:00-05:00",
        ),
    ],
)
def test_execute_refuses_bad_input_with_the_problem_named(anonymous_client, operator_auth, pg18, body, field, words):
    target = make_target(pg18)
    body = {**body, "targets": [target.name if t == "@target" else t for t in body["targets"]]}
    response = anonymous_client.post(f"{API}/optimization/execute", body, "application/json", **operator_auth)
    assert response.status_code == 400, response.content
    assert response.json()["field"] == field
    assert words in response.json()["detail"]
    assert not OptimizationRun.objects.exists()


@pytest.mark.celery_worker
def test_execute_runs_on_the_worker_and_the_report_shows_it(
    transactional_db, celery_worker_process, anonymous_client, operator_auth, pg18
):
    make_dead_tuples(pg18, "public", "api_dead", rows=3000, deleted=2500)
    target = make_target(pg18)
    body = {
        "tuners": ["vacuum"],
        "targets": [target.id],
        "dry_run": False,
        "params": {"min_dead_tuples": 100, "tables": ["public.api_dead"]},
    }
    response = anonymous_client.post(f"{API}/optimization/execute", body, "application/json", **operator_auth)
    assert response.status_code == 202, response.content
    run_id = response.json()[0]["id"]
    assert response.json()[0]["trigger"] == "api"
    wait_for(lambda: not OptimizationRun.objects.get(pk=run_id).is_live, timeout=60, what="the run to finish")
    report = anonymous_client.get(f"{API}/optimization/report?q=api_dead", **operator_auth).json()
    assert report["count"] == 1
    run = report["runs"][0]
    assert run["status"] == "succeeded", run["error"]
    assert run["statements"][0]["statement"] == 'VACUUM (ANALYZE) "public"."api_dead"'
    assert run["started_by"] == "oscar-operator"
    assert {t["kind"] for t in report["tuners"]} >= {"vacuum", "indexes"}


@pytest.mark.celery_worker
def test_apply_through_the_api_runs_on_the_worker_and_marks_the_advice_applied(
    transactional_db, celery_worker_process, anonymous_client, operator_auth, pg18
):
    with pg18.connect() as conn:
        conn.execute("DROP TABLE IF EXISTS api_fk_child, api_fk_parent")
        conn.execute("CREATE TABLE api_fk_parent (id int PRIMARY KEY)")
        conn.execute("CREATE TABLE api_fk_child (id int PRIMARY KEY, parent_id int REFERENCES api_fk_parent)")
    target = make_target(pg18)
    from optimizer.services.runs import run_create, run_execute

    run_execute(run_id=run_create(tuner="indexes", target=target, trigger="api", actor=None, dry_run=False).id)
    advice = Recommendation.objects.get(target=target, category="fk_index", title__contains="api_fk_child")
    response = anonymous_client.post(f"{API}/recommendations/{advice.id}/apply", **operator_auth)
    assert response.status_code == 202, response.content
    run_id = response.json()["id"]
    wait_for(lambda: not OptimizationRun.objects.get(pk=run_id).is_live, timeout=60, what="the apply to finish")
    run = OptimizationRun.objects.get(pk=run_id)
    assert run.status == "succeeded", run.error
    advice.refresh_from_db()
    assert advice.status == "applied"
    assert (
        pg18.scalar("SELECT count(*) FROM pg_indexes WHERE tablename = 'api_fk_child' AND indexdef LIKE '%parent_id%'")
        == 1
    )


def test_database_report_groups_advice_and_reads_vacuum_status(anonymous_client, operator_auth, viewer_auth, pg18):
    make_dead_tuples(pg18, "public", "report_dead", rows=20000, deleted=19000)
    target = make_target(pg18)
    _recommendation(target, category="unused_index", title="Drop unused")
    response = anonymous_client.get(f"{API}/database/report?target={target.name}", **operator_auth)
    assert response.status_code == 200, response.content
    body = response.json()
    assert [r["title"] for r in body["unused_indexes"]] == ["Drop unused"]
    assert any(row["relname"] == "report_dead" and row["n_dead_tup"] >= 19000 for row in body["vacuum_status"]), (
        body["vacuum_status"],
        body["error"],
    )
    missing = anonymous_client.get(f"{API}/database/report?target=nope", **viewer_auth)
    assert missing.status_code == 400 and missing.json()["field"] == "target"


def _counting_listener():
    """A TCP port on 127.0.0.1 that accepts and counts connections (and closes them)."""
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    accepted = []

    def serve():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            accepted.append(1)
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    return listener, accepted


def test_database_report_never_makes_the_server_connect_for_a_viewer_or_a_disabled_target(
    anonymous_client, operator_auth, viewer_auth
):
    from monitoring.services.targets import TargetInput, target_create

    listener, accepted = _counting_listener()
    port = listener.getsockname()[1]
    try:
        target = target_create(
            data=TargetInput(name="counted", kind="postgres", url=f"postgresql://u:p@127.0.0.1:{port}/x"),
            actor=None,
            via="system",
        )
        _recommendation(target, category="unused_index", title="Stored advice")
        seen = anonymous_client.get(f"{API}/database/report?target={target.id}", **viewer_auth)
        assert seen.status_code == 200 and [r["title"] for r in seen.json()["unused_indexes"]] == ["Stored advice"]
        assert seen.json()["vacuum_status"] == [] and "operators" in seen.json()["error"]
        assert accepted == []
        Target.objects.filter(pk=target.pk).update(enabled=False)
        disabled = anonymous_client.get(f"{API}/database/report?target={target.id}", **operator_auth)
        assert disabled.status_code == 200 and "disabled" in disabled.json()["error"]
        assert accepted == []
        Target.objects.filter(pk=target.pk).update(enabled=True)
        anonymous_client.get(f"{API}/database/report?target={target.id}", **operator_auth)
        assert accepted  # the operator's report does read the target (this listener is no PostgreSQL)
    finally:
        listener.close()


def test_benchmark_records_latencies_in_the_log(anonymous_client, operator_auth, viewer_auth, pg18):
    target = make_target(pg18)

    def post(body, auth):
        return anonymous_client.post(f"{API}/benchmark", body, "application/json", **auth)

    assert post({"target": target.name}, viewer_auth).status_code == 403
    assert not OptimizationRun.objects.filter(action="benchmark").exists()
    response = post({"target": target.name, "operations": 50}, operator_auth)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["operations"] == 50
    assert 0 < body["read_p50_ms"] <= body["read_p95_ms"]
    run = OptimizationRun.objects.get(pk=body["run_id"])
    assert run.action == "benchmark" and run.status == "succeeded"
    bad = post({"target": target.name, "operations": 0}, operator_auth)
    assert bad.status_code == 422 and "operations" in bad.content.decode()
    # A GET reads the recorded benchmarks and starts none, for viewers too.
    listed = anonymous_client.get(f"{API}/benchmark", **viewer_auth)
    assert listed.status_code == 200 and [r["id"] for r in listed.json()] == [run.id]
    assert OptimizationRun.objects.filter(action="benchmark").count() == 1
    assert anonymous_client.get(f"{API}/benchmark?target={target.name}", **operator_auth).status_code == 200
    assert OptimizationRun.objects.filter(action="benchmark").count() == 1


def test_benchmark_of_a_disabled_target_connects_to_nothing(anonymous_client, operator_auth, pg18):
    target = make_target(pg18)
    Target.objects.filter(pk=target.pk).update(enabled=False)
    response = anonymous_client.post(
        f"{API}/benchmark", {"target": target.id, "operations": 5}, "application/json", **operator_auth
    )
    assert response.status_code == 400 and "disabled" in response.json()["detail"]
    assert not OptimizationRun.objects.filter(action="benchmark").exists()


def test_database_optimize_starts_every_postgres_tuner_and_refuses_others(anonymous_client, operator_auth, pg18):
    target = make_target(pg18)
    body = {"targets": [target.id], "dry_run": True}
    response = anonymous_client.post(f"{API}/database/optimize", body, "application/json", **operator_auth)
    assert response.status_code == 202, response.content
    assert sorted(r["tuner"] for r in response.json()) == [
        "indexes",
        "n_plus_one",
        "pgconfig",
        "plan_capture",
        "sequences",
        "space",
        "vacuum",
        "vectors",
    ]
    assert all(r["status"] == "pending" and r["dry_run"] for r in response.json())
    body = {"targets": [target.id], "tuners": ["cache"]}
    wrong = anonymous_client.post(f"{API}/database/optimize", body, "application/json", **operator_auth)
    assert wrong.status_code == 400 and wrong.json()["field"] == "tuners"


@pytest.mark.celery_worker
def test_several_tuners_on_one_target_queue_behind_each_other_instead_of_overlapping(
    transactional_db, celery_worker_process, anonymous_client, operator_auth, pg18
):
    target = make_target(pg18)
    body = {"tuners": ["vacuum", "indexes", "pgconfig", "vectors"], "targets": [target.id], "dry_run": True}
    response = anonymous_client.post(f"{API}/optimization/execute", body, "application/json", **operator_auth)
    assert response.status_code == 202
    ids = [r["id"] for r in response.json()]
    wait_for(
        lambda: not any(r.is_live for r in OptimizationRun.objects.filter(pk__in=ids)), timeout=120, what="all runs"
    )
    runs = list(OptimizationRun.objects.filter(pk__in=ids).order_by("started_at"))
    assert [r.status for r in runs] == ["succeeded"] * 4, [r.error for r in runs]
    for earlier, later in itertools.pairwise(runs):
        assert earlier.finished_at <= later.started_at  # one at a time


def test_auto_apply_takes_only_known_categories(anonymous_client, operator_auth, pg18):
    target = make_target(pg18)
    body = {"tuners": ["indexes"], "targets": [target.id], "params": {"auto_apply": ["everything"]}}
    response = anonymous_client.post(f"{API}/optimization/execute", body, "application/json", **operator_auth)
    assert response.status_code == 400
    assert response.json()["field"] == "auto_apply" and "missing_index" in response.json()["detail"]
