"""PromQL alert rules: every element of the expression's result is one alert, over Perfpilot's own
store and over a real Prometheus 2.42 as an external source; thresholds; a failing query keeps the
alerts as they are; the preview; validation at save."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from alerts.models import Alert, AlertRule, AlertStateChange
from alerts.services.evaluation import rule_evaluate
from monitoring.models import PromQLSource
from tests.alerts.conftest import make_rule, write_value
from tests.conftest import free_port

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("clean_samples")]
RULES = "/api/v1/performance/alerts/rules"


def _evaluate(rule, *, after: float = 0.0) -> AlertRule:
    rule = AlertRule.objects.select_related("promql_source").get(pk=rule.pk)
    rule_evaluate(rule=rule, now=timezone.now() + timedelta(seconds=after))
    rule.refresh_from_db()
    return rule


def _alerts(rule) -> dict[str, tuple]:
    return {
        a.labels.get("queue", a.labels.get("instance", "")): (a.state, a.severity, a.value)
        for a in Alert.objects.filter(rule=rule)
    }


def _promql_rule(expression: str, **overrides) -> AlertRule:
    fields = {
        "name": "Queue long",
        "kind": "promql",
        "metric": "",
        "expression": expression,
        "warning_threshold": None,
        "critical_threshold": None,
        "severity": "warning",
        "labels": {"team": "jobs"},
    }
    return make_rule(**{**fields, **overrides})


def test_each_element_of_the_result_is_an_alert_that_goes_pending_firing_and_resolves(target):
    write_value(target, "jobs_queued", 50.0, labels={"queue": "mail"})
    write_value(target, "jobs_queued", 3.0, labels={"queue": "pdf"})
    rule = _promql_rule("jobs_queued > 10", for_seconds=60)

    assert _evaluate(rule).last_error == ""
    assert _alerts(rule) == {"mail": ("pending", "warning", 50.0)}
    alert = Alert.objects.get(rule=rule)
    assert alert.labels == {"alertname": "Queue long", "queue": "mail", "target": "db1", "team": "jobs"}
    assert alert.target_id == target.id

    _evaluate(rule, after=30)
    assert _alerts(rule) == {"mail": ("pending", "warning", 50.0)}
    _evaluate(rule, after=61)
    assert _alerts(rule) == {"mail": ("firing", "warning", 50.0)}

    write_value(target, "jobs_queued", 4.0, labels={"queue": "mail"}, at=timezone.now() + timedelta(seconds=62))
    _evaluate(rule, after=63)
    assert _alerts(rule) == {"mail": ("resolved", "warning", None)}
    history = AlertStateChange.objects.filter(alert__rule=rule).order_by("at").values_list("to_state", flat=True)
    assert list(history) == ["pending", "firing", "resolved"]


def test_thresholds_compare_each_elements_value_at_or_above_them(target):
    write_value(target, "jobs_done_total", 0.0, labels={"queue": "mail"}, at=timezone.now() - timedelta(seconds=60))
    write_value(target, "jobs_done_total", 900.0, labels={"queue": "mail"})
    rule = _promql_rule("rate(jobs_done_total[5m])", warning_threshold=1.0, critical_threshold=2.0)

    _evaluate(rule)
    # 900 done in the 5-minute window (not extrapolated below the counter's start at 0): about 3 per second.
    assert _alerts(rule) == {"mail": ("firing", "critical", pytest.approx(3.0, rel=0.01))}
    alert = Alert.objects.get(rule=rule)
    assert alert.threshold == 2.0 and "__name__" not in alert.labels

    write_value(target, "jobs_done_total", 900.0, labels={"queue": "mail"}, at=timezone.now() + timedelta(seconds=1))
    _evaluate(rule, after=2)  # the last second added nothing, but the window still holds the 900
    assert _alerts(rule)["mail"][1] == "critical"
    _evaluate(rule, after=400)  # the window has slid past every sample: the element is gone
    assert _alerts(rule)["mail"][0] == "resolved"


def test_a_scalar_result_is_one_alert_without_element_labels(target):
    write_value(target, "jobs_queued", 50.0, labels={"queue": "mail"})
    rule = _promql_rule("scalar(sum(jobs_queued))", critical_threshold=40.0)
    _evaluate(rule)
    alert = Alert.objects.get(rule=rule)
    assert alert.labels == {"alertname": "Queue long", "team": "jobs"}
    assert (alert.state, alert.severity, alert.value) == ("firing", "critical", 50.0)


@pytest.fixture
def prometheus_source(real_prometheus):
    now_ms = int(time.time()) * 1000
    real_prometheus.write(
        [
            ({"__name__": "jobs_queued", "instance": name}, [(value, now_ms - i * 15_000) for i in range(10, -1, -1)])
            for name, value in (("a", 120.0), ("b", 5.0))
        ]
    )
    source = PromQLSource.objects.create(name="prometheus", url=real_prometheus.url, timeout_seconds=5)
    return real_prometheus, source


def test_a_rule_reads_an_external_prometheus_and_keeps_its_alerts_while_the_source_is_down(prometheus_source):
    prometheus, source = prometheus_source
    rule = _promql_rule("jobs_queued > 100", promql_source_id=source.id, severity="critical", for_seconds=30)

    assert _evaluate(rule).last_error == ""
    assert _alerts(rule) == {"a": ("pending", "critical", 120.0)}
    assert Alert.objects.get(rule=rule).target_id is None
    _evaluate(rule, after=31)
    assert _alerts(rule) == {"a": ("firing", "critical", 120.0)}
    changes = AlertStateChange.objects.count()

    prometheus.stop()
    failed = _evaluate(rule, after=400)  # long enough that the element would be gone from the data
    assert "prometheus:" in failed.last_error and failed.last_evaluated_at is not None
    assert _alerts(rule) == {"a": ("firing", "critical", 120.0)}  # neither resolved nor changed
    assert AlertStateChange.objects.count() == changes


def test_an_element_pending_when_the_source_went_down_does_not_fire_without_an_observation(target):
    source = PromQLSource.objects.create(name="gone", url=f"http://127.0.0.1:{free_port()}", timeout_seconds=2)
    write_value(target, "jobs_queued", 50.0, labels={"queue": "mail"})
    rule = _promql_rule("jobs_queued > 10", for_seconds=30)
    _evaluate(rule)
    AlertRule.objects.filter(pk=rule.pk).update(promql_source=source)
    failed = _evaluate(rule, after=60)
    assert "gone:" in failed.last_error
    assert _alerts(rule) == {"mail": ("pending", "warning", 50.0)}


def test_the_preview_shows_what_would_fire_now_with_values(target, client, viewer_auth):
    write_value(target, "jobs_queued", 50.0, labels={"queue": "mail"})
    write_value(target, "jobs_queued", 3.0, labels={"queue": "pdf"})
    body = {"name": "Q", "kind": "promql", "expression": "jobs_queued", "warning_threshold": 10, "labels": {"t": "x"}}
    answer = client.post(f"{RULES}/preview", body, "application/json", **viewer_auth)
    assert answer.status_code == 200, answer.content
    rows = [(r["series"], r["target"], r["value"], r["severity"], r["labels"]) for r in answer.json()]
    assert rows == [
        ('jobs_queued{queue="mail", target="db1"}', "db1", 50.0, "warning", {"queue": "mail", "target": "db1",
                                                                               "t": "x", "alertname": "Q"}),
        ('jobs_queued{queue="pdf", target="db1"}', "db1", 3.0, None, {"queue": "pdf", "target": "db1", "t": "x",
                                                                       "alertname": "Q"}),
    ]  # fmt: skip
    rule = _promql_rule("jobs_queued < 10")
    saved = client.get(f"{RULES}/{rule.id}/preview", **viewer_auth).json()
    assert [(r["series"], r["severity"]) for r in saved] == [('jobs_queued{queue="pdf", target="db1"}', "warning")]


def test_the_preview_names_the_field_at_fault(client, viewer_auth, db):
    down = PromQLSource.objects.create(name="down", url=f"http://127.0.0.1:{free_port()}", timeout_seconds=2)
    cases = [
        ({"expression": "rate(x)"}, 400, "expression"),
        ({"expression": "x", "promql_source_id": 999_999}, 400, "promql_source_id"),
        ({"expression": "x", "promql_source_id": down.id}, 502, "promql_source_id"),
    ]
    for extra, status, field in cases:
        answer = client.post(f"{RULES}/preview", {"name": "Q", "kind": "promql", **extra}, "application/json",
                             **viewer_auth)  # fmt: skip
        assert (answer.status_code, answer.json().get("field")) == (status, field), (extra, answer.content)


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ({}, "needs an expression"),
        ({"expression": "sum(x"}, "invalid parameter"),
        ({"expression": "x[5m]"}, "not a range vector"),
        ({"expression": '"text"'}, "not a string"),
        ({"expression": "histogram_count(x)"}, "native histograms, which are not supported"),  # this engine lacks it
        ({"expression": "x", "promql_source_id": 999_999}, "no PromQL source"),
    ],
)
def test_a_rule_whose_expression_cannot_be_evaluated_is_refused_at_save(client, operator_auth, extra, words):
    answer = client.post(RULES, {"name": "Q", "kind": "promql", **extra}, "application/json", **operator_auth)
    assert answer.status_code == 400, answer.content
    body = answer.json()
    assert body["field"] in ("expression", "promql_source_id") and words in body["detail"], body
    assert not AlertRule.objects.filter(name="Q").exists()


def test_an_external_source_may_use_what_this_engine_lacks_and_the_rule_reads_back(client, operator_auth, db):
    source = PromQLSource.objects.create(name="thanos", url="http://127.0.0.1:9090")
    body = {"name": "Q", "kind": "promql", "expression": " absent(up) ", "promql_source_id": source.id,
            "metric": "ignored", "severity": "critical"}  # fmt: skip
    answer = client.post(RULES, body, "application/json", **operator_auth)
    assert answer.status_code == 201, answer.content
    out = answer.json()
    assert (out["expression"], out["promql_source_id"], out["metric"]) == ("absent(up)", source.id, "")


def test_rules_reading_an_external_source_go_last_and_wait_for_the_next_run_once_the_budget_is_spent(
    target, monkeypatch
):
    from alerts.services import evaluation

    source = PromQLSource.objects.create(name="slow", url=f"http://127.0.0.1:{free_port()}", timeout_seconds=2)
    write_value(target, "jobs_queued", 50.0, labels={"queue": "mail"})
    local = _promql_rule("jobs_queued > 10")
    external = _promql_rule("jobs_queued > 10", name="Queue long elsewhere", promql_source_id=source.id)
    monkeypatch.setattr(evaluation, "EXTERNAL_BUDGET_SECONDS", -1)  # spent before the first external rule

    summary = evaluation.rules_evaluate_due(force=True)
    assert (summary.rules, summary.deferred) == (1, 1)
    assert AlertRule.objects.get(pk=local.pk).last_evaluated_at is not None
    assert AlertRule.objects.get(pk=external.pk).last_evaluated_at is None  # still due
    assert _alerts(local) == {"mail": ("firing", "warning", 50.0)}
