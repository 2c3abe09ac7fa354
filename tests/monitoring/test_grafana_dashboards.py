"""The Grafana dashboards shipped under docs/grafana/: each is a dashboard Grafana imports (a Prometheus
datasource input, panels with targets), and every panel's PromQL, with its template variables filled in
as Grafana fills them, answers with data from the query API of a Perfpilot whose collectors ran against
real targets (this host, the test PostgreSQL and Redis, and Perfpilot's own events)."""

from __future__ import annotations

import json
import math
import re
import time
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
import redis
from django.conf import settings
from django.test import Client
from django.utils import timezone

from alerts.models import DeliveryAttempt
from alerts.services.delivery import notification_deliver
from alerts.services.evaluation import rule_evaluate
from monitoring.collectors import perfpilot
from monitoring.models import Series, Target
from monitoring.services.collection import collect_target
from monitoring.services.targets import TargetInput, target_create
from optimizer.models import OptimizationRun
from optimizer.services.runs import run_create, run_execute
from optimizer.services.speedups import speedup_measure
from scaling.models import ScalingDecision
from scaling.services.evaluation import service_evaluate
from tests.alerts.conftest import make_channel, make_rule, refill_buckets
from tests.alerts.fake_slack import FakeSlack
from tests.conftest import _test_database_url, free_port
from tests.optimizer.conftest import plant_applied, plant_stat
from tests.scaling.conftest import webhook_service
from tests.scaling.servers import RecordingWebhook, serving

DASHBOARDS = sorted((Path(__file__).resolve().parents[2] / "docs" / "grafana").glob("*.json"))
EXPECTED = {
    "performance-overview.json",
    "resources.json",
    "optimization-history.json",
    "scaling-decisions.json",
    "database.json",
    "cache.json",
}
# Grafana's own variables, and what it puts in their place for a 5-minute range at a 15 s step with the
# datasource's default 15 s scrape interval: $__rate_interval = max($__interval + 15s, 4 x 15s).
RANGE_SECONDS, STEP_SECONDS = 300, 15
BUILTINS = {"__rate_interval": "1m", "__interval": "15s", "__range": "5m"}
VARIABLE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


def _panels(dashboard: dict) -> list[dict]:
    """Every panel, those inside collapsed rows too; rows themselves left out."""
    found = []
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            found.extend(panel.get("panels", []))
        else:
            found.append(panel)
    return found


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def test_the_six_dashboards_are_shipped():
    assert {path.name for path in DASHBOARDS} == EXPECTED


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda path: path.stem)
def test_each_dashboard_imports_anywhere_through_a_prometheus_datasource_input(path):
    dashboard = _load(path)
    assert dashboard["schemaVersion"] >= 36 and dashboard["title"].startswith("Perfpilot / ")
    assert dashboard["uid"] and dashboard["id"] is None  # Grafana assigns its own id on import
    (source,) = dashboard["__inputs"]
    assert (source["name"], source["type"], source["pluginId"]) == ("DS_PERFPILOT", "datasource", "prometheus")
    declared = {v["name"] for v in dashboard["templating"]["list"]}
    for variable in dashboard["templating"]["list"]:
        assert variable["type"] == "query" and variable["datasource"]["uid"] == "${DS_PERFPILOT}"
        assert variable["query"]["query"].startswith("label_values(")
    panels = _panels(dashboard)
    assert len(panels) >= 6
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels:
        assert panel["title"] and panel["type"] in {"timeseries", "stat", "bargauge"}, panel.get("title")
        assert panel["datasource"] == {"type": "prometheus", "uid": "${DS_PERFPILOT}"}, panel["title"]
        assert set(panel["gridPos"]) == {"h", "w", "x", "y"} and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        assert panel["targets"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${DS_PERFPILOT}" and target["expr"].strip()
            used = {a or b for a, b in VARIABLE.findall(target["expr"])}
            assert used <= declared | BUILTINS.keys(), (panel["title"], used - declared - BUILTINS.keys())


# --- every query against a Perfpilot that collected for real ----------------------------------------


def _prometheus(client: Client, token: str, endpoint: str, params: dict) -> dict:
    """As Grafana's Prometheus datasource asks: a form POST with the token in the Authorization header."""
    response = client.post(f"/prometheus/api/v1/{endpoint}", params, HTTP_AUTHORIZATION=f"Bearer {token}")
    body = response.json()
    assert response.status_code == 200 and body["status"] == "success", (endpoint, params, body)
    return body["data"]


def _substitute(expr: str, values: dict[str, str]) -> str:
    return VARIABLE.sub(lambda m: values[m.group(1) or m.group(2)], expr)


def _variable_values(client: Client, token: str, dashboard: dict, window: dict) -> dict[str, str]:
    """Each variable as Grafana sets it on first load: label_values(metric, label) through the label values
    endpoint, the first value chosen, or the allValue when the variable offers All (its default)."""
    values = dict(BUILTINS)
    for variable in dashboard["templating"]["list"]:
        match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", variable["query"]["query"])
        metric, label = _substitute(match.group(1), values), match.group(2)
        found = _prometheus(client, token, f"label/{label}/values", {"match[]": metric, **window})
        assert found, f"{dashboard['title']}: variable {variable['name']} has no values ({metric}, {label})"
        values[variable["name"]] = variable["allValue"] if variable.get("includeAll") else sorted(found)[0]
    return values


def _collect(*targets: Target) -> None:
    for target in targets:
        target.refresh_from_db()
        outcome = collect_target(target=target)
        assert outcome.ok, (target.name, outcome.error)


def _target(name: str, kind: str, url: str = "") -> Target:
    return target_create(data=TargetInput(name=name, kind=kind, url=url, timeout_seconds=5), actor=None, via="system")


def _activity(pg_url: str) -> None:
    """Work for the rates and ratios of the next collection: Redis hits and misses, PostgreSQL dead rows."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.set("grafana-test:key", "1", ex=600)
    for _ in range(20):
        client.get("grafana-test:key")
        client.get("grafana-test:missing")
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS grafana_test_rows (id int) WITH (autovacuum_enabled = false)")
        conn.execute("INSERT INTO grafana_test_rows SELECT generate_series(1, 100)")
        conn.execute("DELETE FROM grafana_test_rows WHERE id <= 50")
        conn.execute("SELECT pg_stat_force_next_flush()")  # counted now, not at this backend's next report
        conn.execute("SELECT 1")


def _optimizer_events(database: Target) -> None:
    """A real tuner run with its recommendations, a run that fails on a target that is down, and an applied
    index whose speed-up the optimizer's own measurement observes from monitoring's query snapshots."""
    run = run_create(
        tuner="pgconfig",
        target=database,
        trigger="operator",
        actor=None,
        dry_run=False,
        params={"ram_mb": 64 * 1024, "cpus": 16, "storage": "ssd", "workload": "oltp"},
    )
    assert run_execute(run_id=run.id).status == OptimizationRun.Status.SUCCEEDED
    down = _target("grafana-down-db", "postgres", f"postgresql://perfpilot@127.0.0.1:{free_port()}/x")
    failing = run_create(tuner="pgconfig", target=down, trigger="operator", actor=None, dry_run=False)
    assert run_execute(run_id=failing.id).status == OptimizationRun.Status.FAILED
    queryid, applied_at = 4_242, timezone.now() - timedelta(minutes=10)
    plant_stat(database, queryid, at=applied_at - timedelta(minutes=20), calls=100, total_ms=1_000.0)
    plant_stat(database, queryid, at=applied_at + timedelta(minutes=5), calls=100, total_ms=100.0)
    apply = plant_applied(
        database,
        at=applied_at,
        evidence={"table": "orders", "queries": [{"queryid": queryid, "query": "SELECT 1", "mean_time_ms": 10.0}]},
        title="Create index on orders (customer_id)",
    )
    assert speedup_measure(run=apply)["speedup"] == 10.0


def _scaling_events(series_id: int, hook_url: str) -> None:
    """A service scaled through a webhook on this host's CPU, and one whose webhook is gone (a failed decision)."""
    for name, url in (("web", hook_url), ("gone", f"http://127.0.0.1:{free_port()}/scale")):
        service_evaluate(service=webhook_service(name, url, series_id=series_id, target=0.01))
    assert set(ScalingDecision.objects.values_list("result", flat=True)) >= {"scaled", "failed"}


def _alert_events(slack_url: str) -> None:
    """A rule on this host's memory that breaches at once, and its notification delivered to a Slack webhook."""
    make_channel(slack_url)
    rule = make_rule(name="Memory in use", metric="host_memory_used_percent", warning_threshold=0.001,
                     critical_threshold=None, window_seconds=300)  # fmt: skip
    refill_buckets()
    rule_evaluate(rule=rule)
    for notification in rule.alerts.get().notification_items.values_list("notification_id", flat=True):
        assert notification_deliver(notification_id=notification).outcome == "sent"
    assert DeliveryAttempt.objects.filter(outcome="sent").exists()


@pytest.fixture
def pg_url():
    url = _test_database_url()
    yield url
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS grafana_test_rows")


@pytest.mark.usefixtures("clean_samples")
def test_every_panel_query_answers_with_data_from_a_perfpilot_that_collected(monkeypatch, viewer_user, pg_url):
    # Events in this test are seconds old: count them at once instead of after the writers' grace time.
    monkeypatch.setattr(perfpilot, "COUNT_LAG", timedelta(0))
    host = _target("this-host", "host")
    database = _target("perfpilot-postgres", "postgres", pg_url)
    cache = _target("perfpilot-redis", "redis", settings.REDIS_URL)
    own = _target("perfpilot", "perfpilot")
    targets = (host, database, cache, own)
    _collect(*targets)  # the baseline of every counter
    _activity(pg_url)
    _collect(host, database, cache)
    cpu = Series.objects.get(target=host, metric="host_cpu_percent", labels={"cpu": "total"})
    _optimizer_events(database)
    slack = FakeSlack().start()
    try:
        with serving(RecordingWebhook()) as hook_url:
            _scaling_events(cpu.id, hook_url)
        _alert_events(slack.url)
    finally:
        slack.stop()
    _collect(own)
    _activity(pg_url)
    _collect(*targets)

    from core.services import api_token_create

    token = api_token_create(user=viewer_user, name="grafana", via="command").raw
    client = Client()
    end = time.time() + 1
    window = {"start": f"{end - RANGE_SECONDS:.3f}", "end": f"{end:.3f}"}
    empty, asked = [], 0
    for path in DASHBOARDS:
        dashboard = _load(path)
        values = _variable_values(client, token, dashboard, window)
        for panel in _panels(dashboard):
            for target in panel["targets"]:
                query = _substitute(target["expr"], values)
                data = _prometheus(client, token, "query_range", {"query": query, **window, "step": STEP_SECONDS})
                asked += 1
                assert data["resultType"] == "matrix"
                points = [float(v) for series in data["result"] for _, v in series["values"]]
                if not any(math.isfinite(p) for p in points):
                    empty.append(f"{path.name} / {panel['title']}: {query}")
    assert not empty, "panels without data:\n" + "\n".join(empty)
    assert asked >= 90
