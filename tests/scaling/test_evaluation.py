"""Evaluation: decisions written for every service, dry run never calls scale_to, failures isolated,
recorded and signalled, one evaluation per service at a time, manual scale audited, drift re-applied."""

from __future__ import annotations

import contextlib

import pytest
from django.dispatch import receiver

from core.events import failure_event
from core.locks import lock_acquire, lock_key
from core.models import AuditEvent
from scaling.executors.base import ExecutorContext, executor_for
from scaling.models import ScaledService, ScalingDecision
from scaling.services.crud import service_update
from scaling.services.evaluation import ServiceBusy, scaling_tick, service_evaluate, service_scale
from tests.scaling.conftest import load_series, webhook_service

pytestmark = pytest.mark.usefixtures("clean_samples")


def test_dry_run_never_calls_the_executors_scale(hook):
    series = load_series("app_load", 100)  # twice the target of 50
    service = webhook_service("dry", hook.url, series_id=series, dry_run=True)
    result = scaling_tick()
    assert result.evaluated == 1 and result.dry_run == 1
    decision = ScalingDecision.objects.get(service=service)
    assert decision.result == ScalingDecision.Result.DRY_RUN
    assert decision.dry_run is True and decision.executed is False
    assert decision.desired_replicas == 2 and decision.current_replicas == 1
    assert hook.posts == []
    manual = service_scale(service=service, replicas=5, actor=None, via="system")
    assert manual.result == ScalingDecision.Result.DRY_RUN
    assert hook.posts == []
    service.refresh_from_db()
    assert service.applied_replicas is None


def test_beat_tick_scales_through_the_executor_and_explains_why(hook):
    series = load_series("app_load", 100)
    service = webhook_service("web", hook.url, series_id=series)
    scaling_tick()
    decision = ScalingDecision.objects.get(service=service)
    assert decision.result == ScalingDecision.Result.SCALED and decision.executed
    assert [p["json"]["replicas"] for p in hook.posts] == [2]
    assert decision.proposals[0]["desired"] == 2
    assert decision.inputs["rules"]["load"]["value"] == 100
    assert decision.explanation[-1].startswith("Executed: webhook answered 200")
    assert "Decision: scale up from 1 to 2." in decision.explanation
    service.refresh_from_db()
    assert service.applied_replicas == 2


def test_one_failing_executor_never_stops_the_others_and_is_signalled(hook):
    series = load_series("app_load", 100)
    broken = webhook_service("broken", "http://127.0.0.1:9/", series_id=series)
    healthy = webhook_service("healthy", hook.url, series_id=series)
    seen = []

    @receiver(failure_event)
    def record(sender, *, kind, labels, message, **kwargs):
        seen.append((kind, labels["service"], message))

    try:
        result = scaling_tick()
    finally:
        failure_event.disconnect(record)
    assert result.failed == 1 and result.scaled == 1
    failed = ScalingDecision.objects.get(service=broken)
    assert failed.result == ScalingDecision.Result.FAILED and "cannot be reached" in failed.error
    assert seen == [("scaling_failure", "broken", f"Scaling broken failed: {failed.error}")]
    assert ScalingDecision.objects.get(service=healthy).result == ScalingDecision.Result.SCALED
    broken.refresh_from_db()
    assert "cannot be reached" in broken.last_error


def test_a_failing_webhook_500_is_recorded_on_the_decision(hook):
    hook.status = 500
    series = load_series("app_load", 100)
    service = webhook_service("five-hundred", hook.url, series_id=series)
    decision = service_evaluate(service=service)
    assert decision.result == ScalingDecision.Result.FAILED
    assert "answered 500" in decision.error
    service.refresh_from_db()
    assert service.applied_replicas is None


def test_missing_data_never_scales_down(hook):
    stale = load_series("app_load", 1, seconds_ago=600)  # older than the 2-minute freshness limit
    service = webhook_service("idle", hook.url, series_id=stale, min_replicas=1, scale_down_stabilization_seconds=0)
    ScaledService.objects.filter(pk=service.pk).update(applied_replicas=5)
    decision = service_evaluate(service=service)
    assert decision.desired_replicas == 5
    assert decision.inputs["rules"]["load"]["value"] is None
    assert hook.posts == []


def test_paused_and_disabled_services_are_skipped_by_beat(hook):
    series = load_series("app_load", 100)
    webhook_service("paused", hook.url, series_id=series, paused=True)
    webhook_service("off", hook.url, series_id=series, enabled=False)
    assert scaling_tick().evaluated == 0
    assert not ScalingDecision.objects.exists()


def test_one_evaluation_per_service_at_a_time(hook):
    series = load_series("app_load", 100)
    service = webhook_service("locked", hook.url, series_id=series)
    with lock_acquire(lock_key("scale", service.id)):
        with pytest.raises(ServiceBusy):
            service_evaluate(service=service)
        assert scaling_tick().skipped_locked == 1
    assert hook.posts == []


def test_manual_scale_is_executed_recorded_and_audited(hook, operator_user):
    series = load_series("app_load", 50)
    service = webhook_service("manual", hook.url, series_id=series)
    decision = service_scale(service=service, replicas=4, actor=operator_user, via="api")
    assert decision.result == ScalingDecision.Result.SCALED
    assert decision.trigger == ScalingDecision.Trigger.SCALE and decision.actor_name == operator_user.username
    assert hook.posts[-1]["json"]["replicas"] == 4
    audit = AuditEvent.objects.get(action="scaling.scale")
    assert audit.actor == operator_user and audit.detail["replicas"] == 4 and audit.result == "ok"


def test_manual_scale_outside_min_and_max_is_refused(hook, operator_user):
    from core.errors import InvalidInput

    service = webhook_service("bounded", hook.url, series_id=load_series("app_load", 50), max_replicas=3)
    with pytest.raises(InvalidInput) as refused:
        service_scale(service=service, replicas=9, actor=operator_user, via="api")
    assert refused.value.field == "replicas"


def test_drift_after_a_gunicorn_hup_is_re_applied_on_the_next_tick(tmp_path):
    import os
    import signal

    from scaling.services.crud import ServiceInput, rule_upsert, service_create
    from tests.scaling.test_executors_gunicorn import running_gunicorn, wait_until

    with running_gunicorn(tmp_path) as (process, pidfile):
        series = load_series("web_load", 50)
        service = service_create(
            data=ServiceInput(
                name="gunicorn",
                executor_kind="gunicorn",
                executor_config={"pidfile": str(pidfile)},
                min_replicas=1,
                max_replicas=8,
                enabled=True,
                dry_run=False,
            ),
            actor=None,
            via="system",
        )
        rule_upsert(
            service=service,
            name="load",
            data={"source": "series", "series_id": series, "target_value": 50},
            actor=None,
            via="system",
        )
        executor = executor_for("gunicorn", {"pidfile": str(pidfile)}, context=ExecutorContext(service="gunicorn"))
        service_scale(service=service, replicas=4, actor=None, via="system")
        wait_until(lambda: executor.current() == 4, what="4 workers")
        os.kill(process.pid, signal.SIGHUP)
        wait_until(lambda: executor.current() == 2, what="the HUP to reset the workers to 2")
        # The next evaluation (this one, or beat's when a worker of the test session runs one first:
        # the service is committed, so it may) re-applies the 4 that stand, the metric being on target.
        with contextlib.suppress(ServiceBusy):  # a background tick holds it: its decision is checked below
            service_evaluate(service=service)
        wait_until(lambda: executor.current() == 4, what="the re-applied 4 workers")
        decision = ScalingDecision.objects.filter(service=service, observed_replicas=2).latest("id")
        assert decision.current_replicas == 4 and decision.desired_replicas == 4
        assert decision.result == ScalingDecision.Result.SCALED
        assert "drifted" in decision.explanation[0]


def test_a_drifted_count_that_is_now_right_is_adopted_without_acting(hook):
    hook.replicas = 2  # what the status URL reports running
    series = load_series("app_load", 25)  # half the target: 4 replicas would scale to 2
    service = webhook_service("adopt", hook.url, series_id=series, scale_down_stabilization_seconds=0)
    service_update(
        service=service,
        changes={"executor_config": {"url": hook.url, "status_url": f"{hook.url}/status"}},
        actor=None,
        via="system",
    )
    ScaledService.objects.filter(pk=service.pk).update(applied_replicas=4)
    service.refresh_from_db()
    decision = service_evaluate(service=service)
    assert (decision.current_replicas, decision.observed_replicas, decision.desired_replicas) == (4, 2, 2)
    assert decision.result == ScalingDecision.Result.UNCHANGED and hook.posts == []
    service.refresh_from_db()
    assert service.applied_replicas == 2


def test_a_tick_evaluates_critical_services_first():
    series = load_series("app_load", 100)
    for name, tier in (("a-batch", "background"), ("m-api", "important"), ("z-checkout", "critical")):
        webhook_service(name, "http://127.0.0.1:9/", series_id=series, tier=tier)
    order = []

    @receiver(failure_event)
    def record(sender, *, labels, **kwargs):
        order.append(labels["service"])

    try:
        scaling_tick()
    finally:
        failure_event.disconnect(record)
    assert order == ["z-checkout", "m-api", "a-batch"]


def test_an_executed_change_is_signalled(hook):
    from scaling.signals import scaling_executed

    service = webhook_service("signalled", hook.url, series_id=load_series("app_load", 100))
    seen = []

    @receiver(scaling_executed)
    def record(sender, *, service, decision, **kwargs):
        seen.append((service.name, decision.desired_replicas))

    try:
        scaling_tick()
    finally:
        scaling_executed.disconnect(record)
    assert seen == [("signalled", 2)]
    assert service.decisions.get().executed
