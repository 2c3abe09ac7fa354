"""The notification outbox: routing, silences, inhibition, grouping and repeats.

Called inside the transaction that changes an alert's state, so the outbox row exists exactly
when the change does. Grouping: alerts of one channel with equal `group_by` label values share a
message. A new group waits group_wait (0 = send at once) to gather its alerts; after a message a
group sends again at most every group_interval; a firing alert is repeated after
repeat_interval. Alerts that change while a message is still waiting join that message.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from alerts.models import Alert, AlertState, Channel, Notification, NotificationItem, Severity, Silence
from alerts.services.matching import matches
from core.queueing import task_send_on_commit

SEND_STATES = (AlertState.FIRING, AlertState.RESOLVED)


def silence_for(*, alert: Alert, now: datetime | None = None) -> Silence | None:
    """The active silence that mutes this alert, if any."""
    now = now or timezone.now()
    for silence in Silence.objects.filter(starts_at__lte=now, ends_at__gt=now):
        if matches(silence.matchers, alert.labels):
            return silence
    return None


def inhibition_key(alert: Alert) -> tuple | None:
    """What a critical alert and the warning it mutes share: for Perfpilot's alerts their target and
    metric; for external ones (Alertmanager API) every label but `severity`, as the usual
    Alertmanager inhibit rule (`equal` on the other labels) does. None: nothing inhibits it."""
    if alert.source == Alert.Source.EXTERNAL:
        rest = tuple(sorted((k, v) for k, v in alert.labels.items() if k != "severity"))
        return ("external", alert.rule_id, rest)
    return (alert.target_id, alert.metric) if alert.metric else None


def inhibited_by(*, alert: Alert) -> Alert | None:
    """A firing critical alert with the same inhibition key mutes this warning."""
    key = inhibition_key(alert)
    if alert.severity != Severity.WARNING or key is None:
        return None
    critical = Alert.objects.filter(state=AlertState.FIRING, severity=Severity.CRITICAL).exclude(pk=alert.pk)
    if alert.source == Alert.Source.EXTERNAL:
        return next((a for a in critical.filter(rule_id=alert.rule_id) if inhibition_key(a) == key), None)
    return critical.filter(target_id=alert.target_id, metric=alert.metric, source=Alert.Source.PERFPILOT).first()


def alert_is_muted(*, alert: Alert, now: datetime | None = None) -> bool:
    return silence_for(alert=alert, now=now) is not None or inhibited_by(alert=alert) is not None


def channels_for(*, alert: Alert) -> list[Channel]:
    """Enabled channels whose severities and label matchers take this alert."""
    routed = []
    for channel in Channel.objects.filter(enabled=True):
        if channel.severities and alert.severity not in channel.severities:
            continue
        if matches(channel.matchers, alert.labels):
            routed.append(channel)
    return routed


def group_key_for(*, channel: Channel, alert: Alert, state: str) -> str:
    key = ",".join(f"{name}={alert.labels.get(name, '')}" for name in channel.group_by)
    # Resolved alerts get their own message.
    return f"{key}|{state}"


def _told_it_fired(*, channel: Channel, alert: Alert) -> bool:
    items = NotificationItem.objects.filter(alert=alert, notification__channel=channel, state=AlertState.FIRING)
    if alert.fired_at is not None:
        items = items.filter(created_at__gte=alert.fired_at)
    return items.exists()


def notification_enqueue(*, alert: Alert, now: datetime | None = None, is_repeat: bool = False) -> list[Notification]:
    """Write outbox rows for the alert's current state to every channel that routes it.

    Must run inside the transaction that saved the state change. Muted (silenced or inhibited)
    firing alerts are not sent; a resolve is sent only to channels that were told it fired.
    """
    assert transaction.get_connection().in_atomic_block, "enqueue inside the state change's transaction"
    now = now or timezone.now()
    if alert.state not in SEND_STATES:
        return []
    if alert.state == AlertState.FIRING and alert_is_muted(alert=alert, now=now):
        return []
    touched = []
    for channel in channels_for(alert=alert):
        if alert.state == AlertState.RESOLVED and not (
            channel.send_resolved and _told_it_fired(channel=channel, alert=alert)
        ):
            continue
        touched.append(_enqueue_one(channel=channel, alert=alert, now=now, is_repeat=is_repeat))
    return touched


def _enqueue_one(*, channel: Channel, alert: Alert, now: datetime, is_repeat: bool) -> Notification:
    # One enqueuer per channel at a time, so two evaluations cannot both open a message for one group.
    Channel.objects.select_for_update().filter(pk=channel.pk).first()
    group_key = group_key_for(channel=channel, alert=alert, state=alert.state)
    waiting = (
        Notification.objects.select_for_update()
        .filter(channel=channel, group_key=group_key, status=Notification.Status.PENDING, claimed_at=None)
        .filter(is_test=False)
        .order_by("due_at")
        .first()
    )
    if waiting is None:
        due = now + timedelta(seconds=channel.group_wait_seconds)
        last = (
            Notification.objects.filter(channel=channel, group_key=group_key, sent_at__isnull=False)
            .order_by("-sent_at")
            .values_list("sent_at", flat=True)
            .first()
        )
        interval = timedelta(seconds=channel.group_interval_seconds)
        if last is not None and now - last < interval:
            due = max(due, last + interval)
        waiting = Notification.objects.create(channel=channel, group_key=group_key, due_at=due, is_repeat=is_repeat)
        _schedule_delivery(waiting.id, delay=(due - now).total_seconds())
    current = {"state": alert.state, "severity": alert.severity, "value": alert.value, "threshold": alert.threshold}
    NotificationItem.objects.update_or_create(
        notification=waiting, alert=alert, defaults=current, create_defaults={**current, "created_at": now}
    )
    return waiting


def _schedule_delivery(notification_id: int, *, delay: float) -> None:
    from alerts.tasks import deliver_notification_task

    # Short waits get their own timed task; longer ones are picked up by the delivery sweep.
    # Best effort: if the broker is down, the sweep queues the row once it is due.
    if delay <= 0:
        task_send_on_commit(deliver_notification_task, [(notification_id,)], raise_on_failure=False)
    elif delay <= 120:
        task_send_on_commit(deliver_notification_task, [(notification_id,)], countdown=delay, raise_on_failure=False)


def notification_enqueue_repeats(*, now: datetime | None = None) -> int:
    """Repeat firing, unacknowledged, unmuted alerts whose last message to a channel is older than
    that channel's repeat_interval. Returns the number of alerts queued again."""
    now = now or timezone.now()
    repeated = 0
    firing = Alert.objects.filter(state=AlertState.FIRING, acked_at=None).select_related("rule")
    for alert in firing:
        if alert_is_muted(alert=alert, now=now):
            continue
        for channel in channels_for(alert=alert):
            last = (
                NotificationItem.objects.filter(alert=alert, notification__channel=channel)
                .order_by("-created_at")
                .values_list("created_at", flat=True)
                .first()
            )
            if last is not None and now - last < timedelta(seconds=channel.repeat_interval_seconds):
                continue  # told recently
            # Never told: it was muted when it fired and no longer is (or the channel is new).
            with transaction.atomic():
                _enqueue_one(channel=channel, alert=alert, now=now, is_repeat=last is not None)
            repeated += 1
    return repeated
