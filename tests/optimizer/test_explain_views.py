"""The Explain pages: operators explain from a slow query or pasted SQL, viewers read; EXPLAIN ANALYZE
goes to its run's page, which polls until the run is over."""

from __future__ import annotations

from optimizer.models import ExplainRun
from optimizer.services.explain import explain_analyze_execute
from tests.optimizer.conftest import make_target, plant_workload

NORMALIZED = "SELECT relname FROM pg_class WHERE oid = $1"


def test_slow_queries_and_the_database_page_link_each_query_to_explain(operator_client, pg18):
    target = make_target(pg18)
    (queryid,) = plant_workload(target, [(NORMALIZED, 10, 50.0)], database=pg18.name)
    link = f"/optimizer/database/{target.id}/explain/?queryid={queryid}"
    assert link in operator_client.get(f"/monitoring/targets/{target.id}/queries/").content.decode()
    assert link in operator_client.get(f"/optimizer/database/{target.id}/").content.decode()
    page = operator_client.get(link)
    assert page.status_code == 200
    assert f">{NORMALIZED}</textarea>" in page.content.decode()


def test_an_operator_gets_the_generic_plan_of_a_slow_query_with_the_worst_node(operator_client, pg15):
    target = make_target(pg15)
    response = operator_client.post(f"/optimizer/database/{target.id}/explain/", {"query": NORMALIZED, "mode": "auto"})
    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-testid="worst-node"' in html and "force_generic_plan" in html
    assert html.count('data-testid="plan-node"') == len(response.context["result"].tree.nodes)
    assert "&quot;Node Type&quot;" in html  # the raw JSON


def test_a_query_the_target_rejects_is_shown_on_the_form(operator_client, pg18):
    target = make_target(pg18)
    response = operator_client.post(f"/optimizer/database/{target.id}/explain/", {"query": "SELEC 1", "mode": "auto"})
    assert response.status_code == 400
    assert 'data-testid="explain-error"' in response.content.decode()


def test_a_viewer_reads_but_meets_no_form_and_cannot_post(viewer_client, pg18):
    target = make_target(pg18)
    page = viewer_client.get(f"/optimizer/database/{target.id}/explain/")
    assert page.status_code == 200 and "<textarea" not in page.content.decode()
    posted = viewer_client.post(f"/optimizer/database/{target.id}/explain/", {"query": "SELECT 1", "mode": "analyze"})
    assert posted.status_code == 403 and not ExplainRun.objects.exists()


def test_explain_analyze_goes_to_its_run_and_a_second_start_to_the_same_run(operator_client, viewer_client, pg18):
    target = make_target(pg18)
    form = {"query": "SELECT count(*) FROM pg_class", "mode": "analyze", "statement_timeout_seconds": "5"}
    first = operator_client.post(f"/optimizer/database/{target.id}/explain/", form)
    run = ExplainRun.objects.get()
    assert first.status_code == 302 and first.url == f"/optimizer/explain/runs/{run.id}/"
    assert run.statement_timeout_seconds == 5
    second = operator_client.post(f"/optimizer/database/{target.id}/explain/", form)
    assert second.url == first.url and ExplainRun.objects.count() == 1
    live = operator_client.get(f"/optimizer/explain/runs/{run.id}/?fragment=run", HTTP_HX_REQUEST="true")
    assert live.status_code == 200 and 'hx-trigger="every 1s"' in live.content.decode()
    explain_analyze_execute(run_id=run.id)
    over = viewer_client.get(f"/optimizer/explain/runs/{run.id}/?fragment=run", HTTP_HX_REQUEST="true")
    assert over.status_code == 286  # polling stops
    html = viewer_client.get(f"/optimizer/explain/runs/{run.id}/").content.decode()
    assert 'data-status="done"' in html and 'data-testid="worst-node"' in html and "explain-cancel" not in html
