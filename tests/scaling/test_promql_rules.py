"""PromQL scaling rules (as KEDA's Prometheus scaler): evaluated over Perfpilot's store or an external
Prometheus 2.42, exactly one number or a rule error that never scales, what-if over their history, and
the expression and source checked when saved."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler

import pytest
from django.utils import timezone

from monitoring.models import PromQLSource
from scaling import selectors
from scaling.models import ScalingDecision, ScalingRule
from scaling.services.crud import rule_upsert
from scaling.services.evaluation import scaling_tick, service_evaluate
from scaling.services.whatif import rule_replay
from tests.conftest import free_port, perfpilot_remote_write, prometheus_receiving, prometheus_remote_write
from tests.scaling.conftest import webhook_service
from tests.scaling.servers import serving

pytestmark = pytest.mark.usefixtures("clean_samples")
BASE = "/api/v1/performance/scaling"


def _now_ms() -> int:
    return int(time.time() * 1000)


def _service(name: str, url: str, *, expression: str, target: float = 10, source: str | None = None, **fields):
    """A service on the webhook with one PromQL rule, "load"."""
    rule = {"source": "promql", "expression": expression, "promql_source": source, "target_value": target}
    return webhook_service(name, url, rule=rule, **fields)


def _queue_depth(values: dict[str, float], *, seconds_ago: float = 5) -> list:
    at = _now_ms() - round(seconds_ago * 1000)
    return [
        ({"__name__": "queue_depth", "job": "worker", "queue": queue}, [(value, at)]) for queue, value in values.items()
    ]


def test_a_promql_rule_over_perfpilots_store_scales_through_the_executor(hook, anonymous_client, operator_auth):
    perfpilot_remote_write(anonymous_client, operator_auth, _queue_depth({"default": 12, "mail": 18}))
    service = _service("worker", hook.url, expression='sum(queue_depth{job="worker"})')
    decision = service_evaluate(service=service)
    assert decision.result == ScalingDecision.Result.SCALED, decision.explanation
    assert [p["json"]["replicas"] for p in hook.posts] == [3]  # ceil(1 x 30 / 10)
    assert decision.inputs["rules"]["load"]["value"] == 30
    assert decision.inputs["rules"]["load"]["reads"] == 'sum(queue_depth{job="worker"}) on Perfpilot\'s store'
    assert "error" not in decision.inputs["rules"]["load"]


def test_several_elements_are_a_rule_error_and_nothing_is_scaled(hook, anonymous_client, operator_auth):
    perfpilot_remote_write(anonymous_client, operator_auth, _queue_depth({"default": 120, "mail": 180}))
    service = _service("worker", hook.url, expression="queue_depth")  # two series: which one scales?
    decision = service_evaluate(service=service)
    assert decision.result == ScalingDecision.Result.FAILED and not decision.executed
    assert hook.posts == []
    assert "rule load: the expression gave 2 elements" in decision.error
    assert 'queue="default"' in decision.error and 'queue="mail"' in decision.error
    assert decision.inputs["rules"]["load"]["value"] is None
    assert decision.inputs["rules"]["load"]["error"].startswith("the expression gave 2 elements")
    assert decision.desired_replicas == decision.current_replicas == 1
    service.refresh_from_db()
    assert service.last_error == decision.error and service.applied_replicas is None


def test_an_empty_result_is_a_rule_error_and_another_rules_scale_down_is_held(hook, anonymous_client, operator_auth):
    perfpilot_remote_write(anonymous_client, operator_auth, _queue_depth({"default": 1}))
    service = _service("worker", hook.url, expression='sum(queue_depth{queue="default"})', target=10)
    rule_upsert(
        service=service,
        name="missing",
        data={"source": "promql", "expression": 'sum(queue_depth{queue="gone"})', "target_value": 10},
        actor=None,
        via="system",
    )
    service.applied_replicas = 4
    service.save(update_fields=["applied_replicas"])
    decision = service_evaluate(service=service)
    # "load" alone would scale down to 1; "missing" has no value, so (as for missing data) it never does.
    assert decision.result == ScalingDecision.Result.UNCHANGED and decision.desired_replicas == 4
    assert hook.posts == []
    assert "missing: the expression gave no value (an empty vector)" in " ".join(decision.explanation)
    assert decision.inputs["limited_by"] == "missing data"


def test_what_if_replays_a_promql_rule_over_its_history(hook, anonymous_client, operator_auth):
    now = _now_ms() // 60_000 * 60_000
    # One sample a minute for the last hour: low for 40 minutes, then three times the target.
    samples = [(5.0 if minute < 40 else 30.0, now - (60 - minute) * 60_000) for minute in range(60)]
    perfpilot_remote_write(anonymous_client, operator_auth, [({"__name__": "jobs_waiting", "job": "worker"}, samples)])
    service = _service("worker", hook.url, expression="sum(jobs_waiting)", scale_down_stabilization_seconds=0)
    rule = ScalingRule.objects.get(service=service, name="load")
    end = timezone.now()
    replay = rule_replay(rule=rule, start=end - timedelta(hours=1), end=end, start_replicas=1)
    assert replay.steps, "no history replayed"
    assert {step.metric for step in replay.steps} == {5.0, 30.0}
    gaps = {(b.ts - a.ts).total_seconds() for a, b in zip(replay.steps, replay.steps[1:], strict=False)}
    assert gaps == {15.0}  # range_matrix at 15 s over the hour
    assert replay.steps[0].replicas == 1 and replay.steps[-1].replicas == 3
    assert replay.changes >= 1
    api = anonymous_client.get(f"{BASE}/services/worker/rules/load/whatif", {"from": "-1h"}, **operator_auth)
    assert api.status_code == 200, api.content
    assert api.json()["steps"][-1]["replicas"] == 3


def test_what_if_of_a_rule_giving_several_series_is_a_400_naming_the_expression(hook, anonymous_client, operator_auth):
    perfpilot_remote_write(anonymous_client, operator_auth, _queue_depth({"default": 1, "mail": 2}, seconds_ago=60))
    _service("worker", hook.url, expression="queue_depth")
    api = anonymous_client.get(f"{BASE}/services/worker/rules/load/whatif", {"from": "-10m"}, **operator_auth)
    assert api.status_code == 400, api.content
    assert api.json()["field"] == "expression" and "gave 2 elements" in api.json()["detail"]


def test_an_external_prometheus_drives_the_decision(hook, tmp_path):
    process, url = prometheus_receiving(tmp_path)
    try:
        prometheus_remote_write(url, _queue_depth({"default": 35, "mail": 5}))
        PromQLSource.objects.create(name="prom", url=url, timeout_seconds=5)
        # Only Prometheus has these samples: Perfpilot's store is empty.
        service = _service("worker", hook.url, expression='sum(queue_depth{job="worker"})', source="prom")
        decision = service_evaluate(service=service)
    finally:
        process.terminate()
        process.wait(timeout=20)
    assert decision.result == ScalingDecision.Result.SCALED, decision.explanation
    assert [p["json"]["replicas"] for p in hook.posts] == [4]  # ceil(1 x 40 / 10)
    assert decision.inputs["rules"]["load"]["value"] == 40
    assert decision.inputs["rules"]["load"]["reads"].endswith("on source prom")


def test_a_source_that_is_down_fails_the_decision_with_the_reason_and_scales_nothing(hook):
    PromQLSource.objects.create(name="gone", url=f"http://127.0.0.1:{free_port()}", timeout_seconds=1)
    service = _service("worker", hook.url, expression="sum(queue_depth)", source="gone")
    decision = service_evaluate(service=service)
    assert decision.result == ScalingDecision.Result.FAILED and not decision.executed
    assert decision.error.startswith("rule load: PromQL source unavailable: gone:")
    assert "refused" in decision.error.lower()
    assert hook.posts == []
    service.refresh_from_db()
    assert service.last_error == decision.error


class FailingSource:
    """A Prometheus-compatible URL answering every query with a 503 "overloaded"; counts the queries."""

    def __init__(self) -> None:
        self.queries = 0
        self.url = ""

    def handler(self):
        source = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                return

            def do_POST(self):
                source.queries += 1
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(503)
                self.send_header("Content-Length", "10")
                self.end_headers()
                self.wfile.write(b"overloaded")

        return Handler


@pytest.fixture
def failing_source():
    source = FailingSource()
    with serving(source) as url:
        source.url = url
        yield source


def test_a_tick_asks_a_source_that_cannot_answer_once_for_all_its_expressions(hook, failing_source):
    PromQLSource.objects.create(name="flaky", url=failing_source.url, timeout_seconds=1)
    _service("api", hook.url, expression="sum(queue_depth)", source="flaky")
    _service("worker", hook.url, expression="max(queue_depth)", source="flaky")
    result = scaling_tick()
    assert result.failed == 2 and hook.posts == []
    assert failing_source.queries == 1  # a source timing out would otherwise cost its timeout per expression
    errors = dict(ScalingDecision.objects.values_list("service__name", "error"))
    assert errors["api"] == "rule load: PromQL source unavailable: flaky: HTTP 503 overloaded"
    assert errors["worker"] == f"{errors['api']} (not asked again in this read)"


def test_external_sources_are_not_asked_once_a_tick_spent_their_budget(hook, failing_source, monkeypatch):
    monkeypatch.setattr(selectors, "EXTERNAL_PROMQL_BUDGET_SECONDS", 0)
    PromQLSource.objects.create(name="first", url=failing_source.url, timeout_seconds=1)
    PromQLSource.objects.create(name="second", url=failing_source.url, timeout_seconds=1)
    _service("api", hook.url, expression="sum(queue_depth)", source="first", tier="critical")
    _service("worker", hook.url, expression="sum(queue_depth)", source="second", tier="background")
    scaling_tick()
    assert failing_source.queries == 1  # the critical service's source, read first
    errors = dict(ScalingDecision.objects.values_list("service__name", "error"))
    assert errors["api"].startswith("rule load: PromQL source unavailable: first:")
    assert errors["worker"] == "rule load: not evaluated: external PromQL sources took over 0 s of this read"


def _rule_body(**extra) -> dict:
    return {"name": "load", "source": "promql", "expression": "sum(queue_depth)", "target_value": 10, **extra}


@pytest.mark.parametrize(
    ("extra", "field", "words"),
    [
        ({"expression": "sum(queue_depth"}, "expression", "Not a usable PromQL expression"),
        ({"expression": "queue_depth[5m]"}, "expression", "range vector"),
        ({"expression": '"text"'}, "expression", "string"),
        ({"expression": "histogram_count(queue_depth)"}, "expression", "native histograms, which are not supported"),
        ({"expression": ""}, "expression", "needs an expression"),
        ({"promql_source": "nowhere"}, "promql_source", "No PromQL source named 'nowhere'"),
    ],
)
def test_a_bad_expression_or_source_is_a_400_naming_the_field(client, operator_auth, hook, extra, field, words):
    _service("worker", hook.url, expression="sum(queue_depth)")
    response = client.post(
        f"{BASE}/services/worker/rules",
        data=json.dumps(_rule_body(name="other", **extra)),
        content_type="application/json",
        **operator_auth,
    )
    assert response.status_code == 400, response.content
    assert response.json()["field"] == field and words in response.json()["detail"]
    assert not ScalingRule.objects.filter(name="other").exists()


def test_the_api_round_trips_a_promql_rule_and_refuses_its_fields_on_other_sources(client, operator_auth, hook):
    PromQLSource.objects.create(name="prom", url="http://127.0.0.1:9090")
    _service("worker", hook.url, expression="sum(queue_depth)")
    response = client.patch(
        f"{BASE}/services/worker/rules/load",
        data=json.dumps({"promql_source": "prom", "expression": "max(queue_depth)"}),
        content_type="application/json",
        **operator_auth,
    )
    assert response.status_code == 200, response.content
    assert response.json()["promql_source"] == "prom" and response.json()["expression"] == "max(queue_depth)"
    # A subquery is for the external source to judge: Perfpilot's engine lacks it, Prometheus has it.
    response = client.patch(
        f"{BASE}/services/worker/rules/load",
        data=json.dumps({"expression": "max_over_time(sum(queue_depth)[5m:1m])"}),
        content_type="application/json",
        **operator_auth,
    )
    assert response.status_code == 200, response.content
    listed = client.get(f"{BASE}/services/worker/rules", **operator_auth).json()
    assert listed[0]["promql_source"] == "prom"
    response = client.patch(
        f"{BASE}/services/worker/rules/load",
        data=json.dumps({"source": "cpu"}),
        content_type="application/json",
        **operator_auth,
    )
    assert response.status_code == 400 and response.json()["field"] == "expression"
    back_to_store = client.put(
        f"{BASE}/rule/worker/load",
        data=json.dumps({"source": "promql", "expression": "sum(queue_depth)", "target_value": 5}),
        content_type="application/json",
        **operator_auth,
    )
    assert back_to_store.status_code == 200 and back_to_store.json()["promql_source"] is None


def test_the_rule_form_offers_the_sources_and_shows_a_bad_expression_on_its_field(operator_client, hook):
    PromQLSource.objects.create(name="prom", url="http://127.0.0.1:9090")
    service = _service("worker", hook.url, expression="sum(queue_depth)")
    page = operator_client.get(f"/scaling/services/{service.name}/")
    assert page.status_code == 200
    assert '<option value="prom">prom</option>' in page.content.decode()
    form = {
        "name": "latency",
        "source": "promql",
        "expression": "rate(req_total[5m]",
        "promql_source": "prom",
        "target_value": "1",
        "target_type": "value",
        "tolerance": "0.1",
    }
    refused = operator_client.post(f"/scaling/services/{service.name}/rules/", form)
    assert refused.status_code == 422  # the form shown again with its errors
    assert "Not a usable PromQL expression" in refused.content.decode()
    saved = operator_client.post(f"/scaling/services/{service.name}/rules/", {**form, "expression": "vector(1)"})
    assert saved.status_code == 302
    rule = ScalingRule.objects.get(service=service, name="latency")
    assert rule.expression == "vector(1)" and rule.promql_source.name == "prom"


def test_the_service_page_shows_a_down_sources_error_above_the_chart(viewer_client, hook):
    PromQLSource.objects.create(name="gone", url=f"http://127.0.0.1:{free_port()}", timeout_seconds=1)
    service = _service("worker", hook.url, expression="sum(queue_depth)", source="gone")
    page = viewer_client.get(f"/scaling/services/{service.name}/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'data-testid="metric-error"' in html and "PromQL source unavailable: gone:" in html
