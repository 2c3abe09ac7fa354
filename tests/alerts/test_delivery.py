"""Delivery against the fake Slack server: Block Kit content, retries, 429, disabling, claims, rate limit."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.utils import timezone

from alerts.models import Channel, DeliveryAttempt, Notification
from alerts.services.delivery import (
    backoff_seconds,
    channel_test_send,
    notification_claim,
    notification_deliver,
    notifications_reclaim_stale,
)
from tests.alerts.conftest import enqueue, make_alert, make_channel, make_rule, refill_buckets
from tests.alerts.fake_slack import Reply


def _queued(fake_slack, target, **channel):
    make_channel(fake_slack.url, **channel)
    (notification,) = enqueue(make_alert(make_rule(), target=target))
    return notification


def _due_now(notification):
    """Skip the wait (and the rate limit, which tests of it check on their own)."""
    Notification.objects.filter(pk=notification.pk).update(due_at=timezone.now())
    refill_buckets()


@pytest.mark.django_db
def test_slack_gets_block_kit_with_fallback_colour_value_since_and_a_link(fake_slack, target, settings):
    settings.PUBLIC_URL = "https://perfpilot.example.com"
    notification = _queued(fake_slack, target)
    assert notification_deliver(notification_id=notification.id).outcome == "sent"
    (request,) = fake_slack.delivered()
    payload = request.payload
    assert payload["text"] == "[WARNING] Connections high on db1: value 85 % (threshold 80 %)"
    assert ":warning:" in payload["blocks"][0]["text"]["text"]
    attachment = payload["attachments"][0]
    assert attachment["color"] == "#F4A261"
    body = attachment["blocks"][0]["text"]["text"]
    alert_id = notification.items.get().alert_id
    assert f"<https://perfpilot.example.com/alerts/{alert_id}/|Connections high>" in body
    assert "target *db1*" in body and "value *85 %* (threshold 80 %)" in body and "since <!date^" in body
    attempt = DeliveryAttempt.objects.get()
    assert (attempt.outcome, attempt.status_code, attempt.response_head, attempt.attempt) == ("sent", 200, "200 OK", 1)
    assert attempt.latency_ms > 0


def test_a_grouped_slack_message_is_capped_with_n_more():
    from alerts.transports.base import Message, MessageAlert
    from alerts.transports.slack import MAX_ALERTS, SlackTransport

    alerts = tuple(
        MessageAlert(i, f"Alert {i}", "firing", "critical", "db1", "m", 1.0, 0.5, None, f"http://x/{i}")
        for i in range(MAX_ALERTS + 3)
    )
    payload = SlackTransport().render(Message("ops", "firing", alerts, "http://x/alerts/"))
    blocks = payload["attachments"][0]["blocks"]
    assert len(blocks) == MAX_ALERTS + 1
    assert blocks[-1]["elements"][0]["text"].startswith("+3 more")
    assert payload["attachments"][0]["color"] == "#D7263D"
    assert payload["text"].endswith(f"(+{MAX_ALERTS + 2} more)")


@pytest.mark.django_db
def test_resolved_alerts_get_their_own_green_message(fake_slack, target):
    make_channel(fake_slack.url)
    alert = make_alert(make_rule(), target=target)
    Notification.objects.filter(pk=enqueue(alert)[0].pk).update(status="sent", sent_at=timezone.now())
    alert.state = "resolved"
    alert.save()
    (resolved,) = enqueue(alert)
    notification_deliver(notification_id=resolved.id)
    payload = fake_slack.delivered()[0].payload
    assert payload["text"].startswith("[RESOLVED] Connections high")
    assert payload["attachments"][0]["color"] == "#2A9D8F"
    assert ":white_check_mark:" in payload["blocks"][0]["text"]["text"]


@pytest.mark.django_db
def test_a_5xx_is_retried_with_backoff_and_every_attempt_is_logged(fake_slack, target, settings):
    settings.ALERTS_RETRY_BASE_SECONDS = 4.0
    notification = _queued(fake_slack, target)
    fake_slack.fail(Reply(503, "upstream down"), Reply(500, "oops"))
    before = timezone.now()
    first = notification_deliver(notification_id=notification.id)
    assert first.outcome == "retry" and 2.0 <= first.retry_in <= 4.0
    notification.refresh_from_db()
    assert notification.status == "pending" and notification.claimed_at is None and notification.due_at > before
    assert notification_deliver(notification_id=notification.id).outcome == "skipped"  # not due yet
    _due_now(notification)
    second = notification_deliver(notification_id=notification.id)
    assert second.outcome == "retry" and 4.0 <= second.retry_in <= 8.0
    _due_now(notification)
    assert notification_deliver(notification_id=notification.id).outcome == "sent"
    attempts = list(DeliveryAttempt.objects.order_by("attempt").values_list("attempt", "status_code", "outcome"))
    assert attempts == [(1, 503, "retry"), (2, 500, "retry"), (3, 200, "sent")]
    # The receiver's text is never stored: the status and its standard phrase are.
    assert DeliveryAttempt.objects.get(attempt=1).response_head == "503 Service Unavailable"
    assert len(fake_slack.delivered()) == 1


def test_backoff_is_capped_and_jittered(settings):
    settings.ALERTS_RETRY_BASE_SECONDS, settings.ALERTS_RETRY_CAP_SECONDS = 2.0, 60.0
    delays = [backoff_seconds(attempt=30) for _ in range(50)]
    assert all(30.0 <= d <= 60.0 for d in delays) and len(set(delays)) > 1


@pytest.mark.django_db
def test_a_429_honours_retry_after(fake_slack, target):
    notification = _queued(fake_slack, target)
    fake_slack.fail(Reply(429, "rate_limited", {"Retry-After": "7"}))
    outcome = notification_deliver(notification_id=notification.id)
    assert outcome.outcome == "retry" and outcome.retry_in == 7.0
    notification.refresh_from_db()
    assert timezone.now() + timedelta(seconds=6) < notification.due_at <= timezone.now() + timedelta(seconds=7)
    assert DeliveryAttempt.objects.get().retry_in_seconds == 7.0


@pytest.mark.django_db
def test_a_timeout_is_retried(fake_slack, target, settings):
    settings.ALERTS_HTTP_TIMEOUT_SECONDS = 0.5
    notification = _queued(fake_slack, target)
    fake_slack.fail(Reply(hang=2.0))
    outcome = notification_deliver(notification_id=notification.id)
    assert outcome.outcome == "retry" and "timed out" in outcome.detail
    assert DeliveryAttempt.objects.get().status_code is None


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("status", "body"), [(404, "no_service"), (410, "channel_is_archived"), (403, "invalid_token"), (400, "no_service")]
)
def test_a_gone_or_revoked_webhook_disables_the_channel_and_holds_the_message(fake_slack, target, status, body):
    notification = _queued(fake_slack, target)
    fake_slack.fail(Reply(status, body))
    assert notification_deliver(notification_id=notification.id).outcome == "disabled"
    channel = Channel.objects.get()
    assert body in channel.disabled_reason and channel.disabled_at is not None
    notification.refresh_from_db()
    assert notification.status == "pending"  # held, not lost
    assert notification_deliver(notification_id=notification.id).outcome == "skipped"


@pytest.mark.django_db
def test_a_successful_send_test_enables_the_channel_again_and_held_messages_go_out(fake_slack, target, operator_user):
    notification = _queued(fake_slack, target)
    fake_slack.fail(Reply(404, "no_service"))
    notification_deliver(notification_id=notification.id)
    channel = Channel.objects.get()
    fake_slack.fail(Reply(403, "invalid_token"))
    assert channel_test_send(channel=channel, actor=operator_user, via="ui").outcome == "disabled"
    assert Channel.objects.get().disabled_reason
    outcome = channel_test_send(channel=channel, actor=operator_user, via="ui")
    assert outcome.outcome == "sent"
    assert Channel.objects.get().disabled_reason == ""
    assert "Test message" in fake_slack.delivered()[0].payload["text"]
    _due_now(notification)
    assert notification_deliver(notification_id=notification.id).outcome == "sent"


@pytest.mark.django_db
def test_another_4xx_fails_the_notification_without_disabling(fake_slack, target):
    notification = _queued(fake_slack, target)
    fake_slack.fail(Reply(400, "invalid_payload"))
    assert notification_deliver(notification_id=notification.id).outcome == "failed"
    notification.refresh_from_db()
    assert notification.status == "failed" and "invalid_payload" in notification.last_error
    assert Channel.objects.get().disabled_reason == ""


@pytest.mark.django_db
def test_a_channel_sends_at_most_one_message_per_second(fake_slack, target):
    make_channel(fake_slack.url)
    first = enqueue(make_alert(make_rule(), target=target))[0]
    second = enqueue(make_alert(make_rule(name="Other"), target=target))[0]
    assert notification_deliver(notification_id=first.id).outcome == "sent"
    throttled = notification_deliver(notification_id=second.id)
    assert throttled.outcome == "throttled" and 0.9 < throttled.retry_in <= 1.05
    second.refresh_from_db()
    assert second.status == "pending" and second.claimed_at is None
    assert len(fake_slack.delivered()) == 1


@pytest.mark.django_db(transaction=True)
def test_racing_workers_send_a_notification_once(fake_slack, target):
    notification = _queued(fake_slack, target, group_wait_seconds=600)
    _due_now(notification)
    outcomes = []

    def worker():
        from django.db import connection

        outcomes.append(notification_deliver(notification_id=notification.id).outcome)
        connection.close()

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["sent"] + ["skipped"] * 5
    assert len(fake_slack.requests) == 1


@pytest.mark.django_db
def test_a_stale_claim_is_reclaimed_once(target, settings):
    settings.ALERTS_CLAIM_TIMEOUT_SECONDS = 60
    make_channel("http://127.0.0.1:9/hook")
    (notification,) = enqueue(make_alert(make_rule(), target=target))
    assert notification_claim(notification_id=notification.id, worker="w1")
    assert not notification_claim(notification_id=notification.id, worker="w2")
    assert notifications_reclaim_stale(now=timezone.now() + timedelta(seconds=30)) == 0
    assert notifications_reclaim_stale(now=timezone.now() + timedelta(seconds=61)) == 1
    assert notifications_reclaim_stale(now=timezone.now() + timedelta(seconds=62)) == 0
    assert notification_claim(notification_id=notification.id, worker="w2", now=timezone.now() + timedelta(seconds=62))


@pytest.mark.django_db
def test_the_send_test_notification_command(fake_slack):
    from django.core.management import CommandError, call_command

    make_channel(fake_slack.url, name="ops")
    call_command("send_test_notification", "ops")
    assert len(fake_slack.delivered()) == 1
    fake_slack.fail(Reply(500, "down"))
    refill_buckets()
    with pytest.raises(CommandError, match="failed"):
        call_command("send_test_notification", "ops")
    with pytest.raises(CommandError, match="No channel"):
        call_command("send_test_notification", "nope")


@pytest.mark.django_db
def test_a_silence_made_while_the_message_waits_keeps_that_alert_out_of_it(fake_slack, target, operator_user):
    from alerts.services.manage import SilenceInput, silence_create

    make_channel(fake_slack.url, group_wait_seconds=30)
    rule = make_rule()
    quiet = make_alert(rule, target=target, extra_labels={"db": "quiet"})
    loud = make_alert(rule, target=target, extra_labels={"db": "loud"})
    (notification,) = {n.pk: n for alert in (quiet, loud) for n in enqueue(alert)}.values()
    silence_create(
        data=SilenceInput(matchers=[{"name": "db", "op": "=", "value": "quiet"}],
                          ends_at=timezone.now() + timedelta(hours=1), comment="noisy"),
        actor=operator_user,
        via="ui",
    )  # fmt: skip
    _due_now(notification)
    assert notification_deliver(notification_id=notification.id).outcome == "sent"
    assert fake_slack.delivered()[0].payload["text"] == "[WARNING] Connections high on db1: value 85 % (threshold 80 %)"
    assert list(notification.items.values_list("alert_id", flat=True)) == [loud.id]

    other = make_rule(name="Other rule")
    (alone,) = enqueue(make_alert(other, target=target))
    silence_create(
        data=SilenceInput(matchers=[{"name": "alertname", "op": "=", "value": "Other rule"}],
                          ends_at=timezone.now() + timedelta(hours=1), comment="known"),
        actor=operator_user,
        via="ui",
    )  # fmt: skip
    _due_now(alone)
    outcome = notification_deliver(notification_id=alone.id)
    alone.refresh_from_db()
    assert outcome.outcome == "muted" and alone.status == "muted" and len(fake_slack.delivered()) == 1
