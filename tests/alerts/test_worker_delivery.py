"""Through a real Celery worker: a breach reaches Slack, a 5xx is retried, and a worker killed in the
middle of a delivery leaves a notification that is delivered exactly once after the restart."""

from __future__ import annotations

import os
import signal
import time

import pytest
from django.conf import settings

from alerts.models import Alert, DeliveryAttempt, Notification
from alerts.tasks import deliver_notification_task, evaluate_rules_task, sweep_notifications_task
from core.supervisor import stop_process_group
from tests.alerts.conftest import enqueue, make_alert, make_channel, make_rule, write_value
from tests.alerts.fake_slack import Reply
from tests.conftest import _spawn, _wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.celery_worker]


def _until(predicate, *, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.usefixtures("clean_samples")
def test_a_breach_is_evaluated_and_delivered_by_the_worker(celery_worker_process, fake_slack, target):
    make_channel(fake_slack.url, group_wait_seconds=0)
    rule = make_rule()
    write_value(target, "postgres_connections_used_percent", 97.0)
    evaluate_rules_task.delay()
    (request,) = fake_slack.wait_for(1)
    assert request.payload["text"].startswith("[CRITICAL] Connections high on db1")
    alert = Alert.objects.get(rule=rule)
    assert alert.state == "firing"
    _until(lambda: Notification.objects.filter(status="sent").exists(), timeout=10, what="the row marked sent")


def test_a_5xx_is_retried_by_the_worker_until_delivered(celery_worker_process, fake_slack, target):
    make_channel(fake_slack.url, group_wait_seconds=0)
    fake_slack.fail(Reply(500, "boom"), Reply(502, "bad gateway"))
    alert = make_alert(make_rule(), target=target)
    (notification,) = enqueue(alert)  # committed: the task is queued on commit
    fake_slack.wait_for(1, timeout=40)
    _until(lambda: Notification.objects.get(pk=notification.pk).status == "sent", timeout=10, what="sent")
    assert list(DeliveryAttempt.objects.order_by("attempt").values_list("status_code", flat=True)) == [500, 502, 200]
    assert len(fake_slack.delivered()) == 1


def _worker(queue: str, log: str):
    env_before = os.environ.get("PERFPILOT_ALERTS_CLAIM_TIMEOUT")
    os.environ["PERFPILOT_ALERTS_CLAIM_TIMEOUT"] = "5"
    try:
        process, log_path = _spawn(
            ["worker", "--loglevel", "INFO", "--concurrency", "1", "--queues", f"{queue},notify",
             "--hostname", f"{queue}-{time.time_ns()}@%h", "--without-mingle", "--without-gossip"],
            log,
        )  # fmt: skip
    finally:
        if env_before is None:
            del os.environ["PERFPILOT_ALERTS_CLAIM_TIMEOUT"]
        else:
            os.environ["PERFPILOT_ALERTS_CLAIM_TIMEOUT"] = env_before
    from core.heartbeat import worker_heartbeats

    _wait_for(
        lambda: any(b.name.startswith(f"{queue}-") for b in worker_heartbeats()),
        timeout=60,
        what="the alerts worker",
        process=process,
        log=log_path,
    )
    return process


def test_a_worker_killed_mid_delivery_delivers_exactly_once_after_restart(fake_slack, target):
    queue = "alerts-kill-test"
    make_channel(fake_slack.url, group_wait_seconds=600)  # due later: no task on commit
    (notification,) = enqueue(make_alert(make_rule(), target=target))
    Notification.objects.filter(pk=notification.pk).update(due_at=notification.created_at)
    fake_slack.fail(Reply(hang=60))  # the first request is received, then never answered

    first = _worker(queue, "alerts-worker-killed.log")
    try:
        deliver_notification_task.apply_async((notification.pk,), queue=queue)
        assert fake_slack.arrived.wait(30), "the worker never called Slack"
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(10)
    finally:
        stop_process_group(first)
    killed = Notification.objects.get(pk=notification.pk)
    assert killed.status == "sending" and killed.claimed_at is not None  # claimed by the dead worker
    assert fake_slack.delivered() == []

    second = _worker(queue, "alerts-worker-restarted.log")
    try:
        time.sleep(5.5)  # older than the claim timeout of these workers (5 s)
        sweep_notifications_task.apply_async(queue=queue)
        _until(lambda: Notification.objects.get(pk=notification.pk).status == "sent", timeout=30, what="sent")
        time.sleep(6)  # a later sweep must not send it again
        sweep_notifications_task.apply_async(queue=queue)
        time.sleep(2)
    finally:
        stop_process_group(second)
    assert len(fake_slack.delivered()) == 1
    assert len(fake_slack.requests) == 2  # the interrupted one and the one delivery
    assert DeliveryAttempt.objects.filter(notification_id=notification.pk, outcome="sent").count() == 1
    assert settings.ALERTS_CLAIM_TIMEOUT_SECONDS == 60  # the test process kept its own setting
