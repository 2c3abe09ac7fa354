"""Failures other apps report through core.events.failure_event become event alerts: the receiver
is connected by AlertsConfig.ready(), the default rules fire, and scaling failures reach Slack
through the worker. Tuner runs and applies that fail: tests/optimizer/test_runs.py (they need its
databases)."""

from __future__ import annotations

import pytest

from alerts.models import Alert
from alerts.services.defaults import rules_install_defaults
from core.events import failure_event
from scaling.models import ScalingDecision
from scaling.services.evaluation import service_evaluate, service_scale
from scaling.tasks import evaluate_all_task
from tests.alerts.conftest import make_channel
from tests.scaling.conftest import load_series, webhook_service
from tests.scaling.servers import RecordingWebhook, serving


def test_the_failure_signal_fires_the_default_rule_through_the_production_wiring(target):
    rules_install_defaults()
    failure_event.send(sender=None, kind="tuner_failure", target=target, labels={"tuner": "cache", "action": "run"},
                       message="cache run on db1 failed: timeout")  # fmt: skip
    alert = Alert.objects.get()
    assert (alert.rule.builtin_key, alert.state, alert.target_id, alert.message) == (
        "tuner_failure",
        "firing",
        target.id,
        "cache run on db1 failed: timeout",
    )
    assert alert.labels["target"] == "db1" and alert.labels["tuner"] == "cache"


def _failing_webhook() -> RecordingWebhook:
    hook = RecordingWebhook()
    hook.status = 500
    return hook


@pytest.mark.celery_worker
@pytest.mark.usefixtures("clean_samples")
def test_a_webhook_answering_500_fires_the_default_rule_and_reaches_slack(celery_worker_process, fake_slack):
    rules_install_defaults()
    make_channel(fake_slack.url, group_wait_seconds=0)
    hook = _failing_webhook()
    with serving(hook) as url:
        service = webhook_service("checkout", url, series_id=load_series("app_load", 100))
        evaluate_all_task.delay()  # beat's tick, run by the worker
        (request,) = fake_slack.wait_for(1)
    decision = ScalingDecision.objects.get(service=service)
    assert decision.result == ScalingDecision.Result.FAILED and "answered 500" in decision.error
    assert [post["json"]["replicas"] for post in hook.posts] == [2]
    assert request.payload["text"] == "[CRITICAL] Scaling evaluation or action failed"
    detail = request.payload["attachments"][0]["blocks"][0]["text"]["text"]
    assert f"> Scaling checkout failed: {decision.error}" in detail
    alert = Alert.objects.get(rule__builtin_key="scaling_failure")
    assert alert.state == "firing" and alert.severity == "critical"
    assert alert.labels == {"alertname": "Scaling failed", "target": "", "metric": "scaling_failure",
                            "service": "checkout", "tier": "important", "executor": "webhook"}  # fmt: skip


@pytest.mark.usefixtures("clean_samples")
def test_evaluate_now_and_a_manual_scale_that_fail_fire_the_alert_of_each_service(operator_user):
    rules_install_defaults()
    series = load_series("app_load", 100)
    with serving(_failing_webhook()) as url:
        evaluated = webhook_service("evaluated", url, series_id=series)
        scaled = webhook_service("scaled", url, series_id=series)
        assert service_evaluate(service=evaluated, actor=operator_user, via="ui").result == "failed"
        assert service_scale(service=scaled, replicas=3, actor=operator_user, via="ui").result == "failed"
    alerts = {alert.labels["service"]: alert for alert in Alert.objects.filter(rule__builtin_key="scaling_failure")}
    assert sorted(alerts) == ["evaluated", "scaled"]
    assert all(alert.state == "firing" and "answered 500" in alert.message for alert in alerts.values())
