"""Delivering outbox rows: claim, rate-limit, send, log, and retry or give up.

- Claim: ``filter(id=n, claimed_at=None, ...).update(claimed_at=now) == 1`` (healthchecks'
  sendalerts), so two workers, a duplicate task message or a restart never send one row twice.
- A claim older than PERFPILOT_ALERTS_CLAIM_TIMEOUT belongs to a worker that died mid-send; the
  sweep hands the row out again, once (the reclaim is itself one conditional UPDATE).
- Each channel takes at most PERFPILOT_ALERTS_RATE_PER_SECOND messages (a token bucket in Redis,
  shared by every worker). A row that finds the bucket empty is put back, due when a token will be.
- 5xx and timeouts: retried with capped exponential back-off and full jitter. 429: after
  Retry-After. 404/410/invalid_token/no_service: the channel is disabled with the reason and its
  rows wait (nothing is dropped) until a successful "Send test" enables it again. Other 4xx: failed.
- Every attempt is logged as a DeliveryAttempt.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from alerts.formatting import alert_value_text, metric_unit, rule_quantity
from alerts.models import AlertState, Channel, DeliveryAttempt, Notification, NotificationItem
from alerts.transports.base import Message, MessageAlert, SendResult, TransportError, transport_for
from core.queueing import task_send_on_commit
from core.redis_client import get_redis
from monitoring.selectors.metric_names import metric_units

logger = logging.getLogger(__name__)

_BUCKET_SCRIPT = """
local rate = tonumber(ARGV[1])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local data = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(data[1]) or 1
local ts = tonumber(data[2]) or now
tokens = math.min(1, tokens + math.max(0, now - ts) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('EXPIRE', KEYS[1], 3600)
return tostring(wait)
"""


RATE_MARGIN_SECONDS = 0.05


@dataclass(frozen=True)
class DeliveryOutcome:
    notification_id: int
    outcome: str  # sent, retry, failed, disabled, throttled, skipped, muted
    detail: str = ""
    retry_in: float | None = None


def rate_limit_take(*, channel_id: int) -> float:
    """Take a token of the channel's bucket (capacity 1): 0 if sent may go now, else seconds to wait.

    Tokens come RATE_MARGIN_SECONDS later than the configured rate says, so that jitter on the way
    to the receiver never makes two messages arrive closer than 1/rate apart there.
    """
    rate = 1.0 / (1.0 / settings.ALERTS_RATE_PER_SECOND + RATE_MARGIN_SECONDS)
    return float(get_redis().eval(_BUCKET_SCRIPT, 1, f"perfpilot:alerts:bucket:{channel_id}", rate))


def backoff_seconds(*, attempt: int) -> float:
    """Capped exponential back-off with full jitter: uniform(0.5, 1) x min(cap, base x 2^(attempt-1))."""
    ceiling = min(settings.ALERTS_RETRY_CAP_SECONDS, settings.ALERTS_RETRY_BASE_SECONDS * 2 ** max(0, attempt - 1))
    return ceiling * random.uniform(0.5, 1.0)


def _deliverable() -> Q:
    return Q(status=Notification.Status.PENDING, claimed_at=None, channel__enabled=True, channel__disabled_reason="")


def notification_claim(*, notification_id: int, worker: str = "", now: datetime | None = None) -> bool:
    """Atomically take a due row; False when it is not due, not deliverable or someone else has it."""
    now = now or timezone.now()
    ids = Notification.objects.filter(_deliverable(), id=notification_id, due_at__lte=now).values("id")
    claimed = Notification.objects.filter(id__in=ids, claimed_at=None).update(
        claimed_at=now, claimed_by=worker[:200], status=Notification.Status.SENDING
    )
    return claimed == 1


def message_build(*, notification: Notification) -> Message:
    base = settings.PUBLIC_URL.rstrip("/")
    if notification.is_test:
        return Message(channel=notification.channel.name, state="test", alerts=(), dashboard_url=f"{base}/alerts/")
    items = list(notification.items.select_related("alert__rule", "alert__target").order_by("-severity", "alert_id"))
    known_units = metric_units()
    alerts = tuple(
        MessageAlert(
            id=item.alert_id,
            title=item.alert.title,
            state=item.state,
            severity=item.severity,
            target=item.alert.labels.get("target") or item.alert.labels.get("instance", ""),
            metric=item.alert.metric,
            value=item.value,
            threshold=item.threshold,
            since=item.alert.fired_at or item.alert.since,
            url=f"{base}/alerts/{item.alert_id}/",
            summary=item.alert.rule.summary,
            message=item.alert.message,
            labels=item.alert.labels,
            **_readable_value(item, known_units),
        )
        for item in items
    )
    state = AlertState.RESOLVED if alerts and all(a.state == AlertState.RESOLVED for a in alerts) else "firing"
    return Message(
        channel=notification.channel.name,
        state=state,
        alerts=alerts,
        dashboard_url=f"{base}/alerts/",
        is_repeat=notification.is_repeat,
    )


def _readable_value(item: NotificationItem, known_units: dict[str, str]) -> dict[str, str]:
    kind, unit = item.alert.rule.kind, metric_unit(item.alert.metric, known_units)
    return {
        "value_text": alert_value_text(kind=kind, value=item.value, unit=unit),
        "threshold_text": rule_quantity(kind=kind, value=item.threshold, unit=unit)
        if item.threshold is not None
        else "",
    }


def _drop_muted_items(notification: Notification) -> int:
    """Firing alerts silenced (or inhibited) since they were queued are left out, as Alertmanager
    does when a group is flushed; their state stays as it is."""
    from alerts.services.outbox import alert_is_muted

    dropped = 0
    for item in notification.items.filter(state=AlertState.FIRING).select_related("alert"):
        if alert_is_muted(alert=item.alert):
            item.delete()
            dropped += 1
    return dropped


def _log(notification: Notification, *, attempt: int, outcome: str, started: float, **fields) -> None:
    DeliveryAttempt.objects.create(
        notification=notification,
        channel_id=notification.channel_id,
        attempt=attempt,
        outcome=outcome,
        latency_ms=round((time.perf_counter() - started) * 1000, 2),
        at=timezone.now(),
        **fields,
    )


def notification_deliver(*, notification_id: int, worker: str = "") -> DeliveryOutcome:
    """Claim one outbox row and try to send it once; schedules its own retry."""
    if not notification_claim(notification_id=notification_id, worker=worker):
        return DeliveryOutcome(notification_id, "skipped", "not due, not deliverable, or claimed elsewhere")
    notification = Notification.objects.select_related("channel").get(pk=notification_id)
    channel = notification.channel
    wait = rate_limit_take(channel_id=channel.id)
    if wait > 0:
        _release(notification, delay=wait, fields={})
        return DeliveryOutcome(notification_id, "throttled", f"channel rate limit; due in {wait:.2f} s", wait)
    muted = _drop_muted_items(notification)
    message = message_build(notification=notification)
    if not notification.is_test and not message.alerts:
        reason = (
            "every alert in it was silenced or inhibited before it was sent" if muted else "its alerts were deleted"
        )
        Notification.objects.filter(pk=notification_id).update(status=Notification.Status.MUTED, last_error=reason)
        return DeliveryOutcome(notification_id, "muted", reason)
    return _attempt(notification, message=message, attempt=notification.attempts + 1)


def _attempt(notification: Notification, *, message: Message, attempt: int) -> DeliveryOutcome:
    """Send a claimed row once and record the outcome; a success of a test re-enables the channel."""
    channel = notification.channel
    started = time.perf_counter()
    try:
        result: SendResult = transport_for(channel.kind).send(
            url=channel.url, message=message, timeout=settings.ALERTS_HTTP_TIMEOUT_SECONDS
        )
    except TransportError as exc:
        return _failed(notification, exc, attempt=attempt, started=started)
    except Exception as exc:  # a transport bug: recorded like any failure, retried
        logger.exception("transport %s failed on notification %s", channel.kind, notification.id)
        return _failed(notification, TransportError(f"{type(exc).__name__}: {exc}"), attempt=attempt, started=started)
    with transaction.atomic():
        Notification.objects.filter(pk=notification.id).update(
            status=Notification.Status.SENT, sent_at=timezone.now(), attempts=attempt, last_error=""
        )
        _log(
            notification,
            attempt=attempt,
            outcome=DeliveryAttempt.Outcome.SENT,
            started=started,
            status_code=result.status_code,
            response_head=result.response_head[:500],
        )
        if notification.is_test and channel.disabled_reason:
            Channel.objects.filter(pk=channel.pk).update(disabled_reason="", disabled_at=None)
            _resume_held(channel_id=channel.id)
    return DeliveryOutcome(notification.id, "sent", f"HTTP {result.status_code}")


def _failed(notification: Notification, exc: TransportError, *, attempt: int, started: float) -> DeliveryOutcome:
    fields = {"status_code": exc.status_code, "response_head": exc.response_head[:500], "error": str(exc)[:2000]}
    too_old = timezone.now() - notification.created_at > timedelta(hours=settings.ALERTS_MAX_DELIVERY_HOURS)
    with transaction.atomic():
        if exc.disable:
            reason = str(exc)[:300]
            Channel.objects.filter(pk=notification.channel_id).update(
                disabled_reason=reason, disabled_at=timezone.now()
            )
            _log(notification, attempt=attempt, outcome=DeliveryAttempt.Outcome.DISABLED, started=started, **fields)
            if notification.is_test:
                _finish_failed(notification, attempt, str(exc))
            else:  # held: sent once the channel works again
                _release(notification, delay=0, fields={"attempts": attempt, "last_error": str(exc)[:2000]})
            logger.warning("channel %s disabled: %s", notification.channel_id, reason)
            return DeliveryOutcome(notification.id, "disabled", reason)
        if exc.permanent or too_old or notification.is_test:
            _log(notification, attempt=attempt, outcome=DeliveryAttempt.Outcome.FAILED, started=started, **fields)
            _finish_failed(notification, attempt, str(exc))
            return DeliveryOutcome(notification.id, "failed", str(exc))
        delay = exc.retry_after if exc.retry_after is not None else backoff_seconds(attempt=attempt)
        delay = min(delay, 3600.0)
        _log(
            notification,
            attempt=attempt,
            outcome=DeliveryAttempt.Outcome.RETRY,
            started=started,
            retry_in_seconds=round(delay, 3),
            **fields,
        )
        _release(notification, delay=delay, fields={"attempts": attempt, "last_error": str(exc)[:2000]})
    return DeliveryOutcome(notification.id, "retry", str(exc), delay)


def _finish_failed(notification: Notification, attempt: int, error: str) -> None:
    Notification.objects.filter(pk=notification.pk).update(
        status=Notification.Status.FAILED, attempts=attempt, last_error=error[:2000]
    )


def _release(notification: Notification, *, delay: float, fields: dict) -> None:
    """Give a claimed row back, due after delay, and make sure a task will come for it."""
    Notification.objects.filter(pk=notification.pk, status=Notification.Status.SENDING).update(
        status=Notification.Status.PENDING,
        claimed_at=None,
        claimed_by="",
        due_at=timezone.now() + timedelta(seconds=delay),
        **fields,
    )
    from alerts.tasks import deliver_notification_task

    notification_id = notification.id
    # Best effort: if the broker is down, the sweep queues the row once it is due.
    task_send_on_commit(deliver_notification_task, [(notification_id,)], countdown=delay, raise_on_failure=False)


def _resume_held(*, channel_id: int) -> None:
    from alerts.tasks import deliver_notification_task

    held = list(
        Notification.objects.filter(channel_id=channel_id, status=Notification.Status.PENDING, claimed_at=None)
        .order_by("due_at")
        .values_list("id", flat=True)
    )
    # Best effort: if the broker is down, the sweep queues them once it is back.
    task_send_on_commit(deliver_notification_task, [(i,) for i in held], raise_on_failure=False)


def notifications_reclaim_stale(*, now: datetime | None = None) -> int:
    """Rows claimed longer ago than the claim timeout (their worker died mid-send) become due again."""
    now = now or timezone.now()
    stale_before = now - timedelta(seconds=settings.ALERTS_CLAIM_TIMEOUT_SECONDS)
    reclaimed = Notification.objects.filter(status=Notification.Status.SENDING, claimed_at__lt=stale_before).update(
        status=Notification.Status.PENDING, claimed_at=None, claimed_by="", due_at=now
    )
    if reclaimed:
        logger.warning("reclaimed %d notification(s) from workers that stopped mid-send", reclaimed)
    return reclaimed


def notifications_due(*, now: datetime | None = None, limit: int = 500) -> list[int]:
    now = now or timezone.now()
    return list(
        Notification.objects.filter(_deliverable(), due_at__lte=now)
        .order_by("due_at")
        .values_list("id", flat=True)[:limit]
    )


def notifications_sweep(*, now: datetime | None = None) -> dict:
    """Reclaim stale claims and queue a delivery task for every due row (the safety net behind
    the tasks queued on commit and on retry; duplicates are harmless thanks to the claim)."""
    from alerts.tasks import deliver_notification_task

    reclaimed = notifications_reclaim_stale(now=now)
    due = notifications_due(now=now)
    for notification_id in due:
        deliver_notification_task.delay(notification_id)
    return {"reclaimed": reclaimed, "queued": len(due)}


def channel_test_send(*, channel: Channel, actor, via: str) -> DeliveryOutcome:
    """Send a test message now (bypassing the wait, not the rate limit); success re-enables the channel."""
    from core.services import audit_record

    with transaction.atomic():
        notification = Notification.objects.create(
            channel=channel, group_key="test", is_test=True, due_at=timezone.now()
        )
        # A test must be able to run on a disabled channel: claim it directly.
        Notification.objects.filter(pk=notification.pk, claimed_at=None).update(
            claimed_at=timezone.now(), claimed_by=f"test by {via}", status=Notification.Status.SENDING
        )
    outcome = _send_claimed_test(notification_id=notification.pk)
    audit_record(
        actor=actor,
        via=via,
        action="alerts.channel.test",
        object_repr=channel.name,
        result="ok" if outcome.outcome == "sent" else "failed",
        detail={"outcome": outcome.outcome, "detail": outcome.detail},
    )
    return outcome


def _send_claimed_test(*, notification_id: int) -> DeliveryOutcome:
    notification = Notification.objects.select_related("channel").get(pk=notification_id)
    wait = rate_limit_take(channel_id=notification.channel_id)
    if wait > 0:
        time.sleep(min(wait, 2.0))
    return _attempt(notification, message=message_build(notification=notification), attempt=1)
