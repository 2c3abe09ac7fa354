"""The outbox: routing, grouping (group_wait, group_interval), repeats, silences and inhibition."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from alerts.models import Notification
from alerts.services.manage import SilenceInput, alert_ack, silence_create
from alerts.services.outbox import notification_enqueue_repeats
from tests.alerts.conftest import enqueue, make_alert, make_channel, make_rule

pytestmark = pytest.mark.django_db  # in one transaction: on_commit never fires, so no task is queued


def test_alerts_of_one_group_share_a_message_that_waits_group_wait(target):
    channel = make_channel("http://127.0.0.1:9/hook", group_wait_seconds=30)
    rule = make_rule()
    now = timezone.now()
    first = make_alert(rule, target=target, extra_labels={"database": "a"})
    second = make_alert(rule, target=target, extra_labels={"database": "b"})
    (n1,) = enqueue(first, now=now)
    (n2,) = enqueue(second, now=now + timedelta(seconds=5))
    assert n1.pk == n2.pk and n1.channel == channel
    assert n1.due_at == now + timedelta(seconds=30)
    assert sorted(n1.items.values_list("alert_id", flat=True)) == sorted([first.id, second.id])


def test_group_wait_zero_sends_at_once_and_other_rules_are_other_groups(target):
    make_channel("http://127.0.0.1:9/hook", group_wait_seconds=0)
    now = timezone.now()
    (n1,) = enqueue(make_alert(make_rule(), target=target), now=now)
    (n2,) = enqueue(make_alert(make_rule(name="Other"), target=target), now=now)
    assert n1.due_at == now and n1.pk != n2.pk


def test_after_a_message_the_group_waits_group_interval(target):
    make_channel("http://127.0.0.1:9/hook", group_wait_seconds=0, group_interval_seconds=300)
    rule = make_rule()
    now = timezone.now()
    (sent,) = enqueue(make_alert(rule, target=target, extra_labels={"db": "a"}), now=now)
    Notification.objects.filter(pk=sent.pk).update(status="sent", sent_at=now, claimed_at=now)
    (later,) = enqueue(make_alert(rule, target=target, extra_labels={"db": "b"}), now=now + timedelta(seconds=10))
    assert later.pk != sent.pk and later.due_at == now + timedelta(seconds=300)


def test_a_firing_alert_is_repeated_after_repeat_interval_unless_acknowledged(target, operator_user):
    make_channel("http://127.0.0.1:9/hook", repeat_interval_seconds=3600)
    alert = make_alert(make_rule(), target=target)
    now = timezone.now()
    (first,) = enqueue(alert, now=now)
    Notification.objects.filter(pk=first.pk).update(status="sent", sent_at=now, claimed_at=now)
    assert notification_enqueue_repeats(now=now + timedelta(seconds=3599)) == 0
    assert notification_enqueue_repeats(now=now + timedelta(seconds=3601)) == 1
    repeat = Notification.objects.exclude(pk=first.pk).get()
    assert repeat.is_repeat and repeat.items.get().alert_id == alert.id
    Notification.objects.filter(pk=repeat.pk).update(status="sent", sent_at=now, claimed_at=now)
    alert_ack(alert=alert, actor=operator_user, comment="on it", via="ui")
    assert notification_enqueue_repeats(now=now + timedelta(hours=10)) == 0


def test_routing_by_severity_and_labels(target):
    pager = make_channel("http://127.0.0.1:9/a", name="pager", severities=["critical"])
    team = make_channel("http://127.0.0.1:9/b", name="team", matchers=[{"name": "target", "op": "=", "value": "db1"}])
    make_channel("http://127.0.0.1:9/c", name="other-team", matchers=[{"name": "target", "op": "=", "value": "db2"}])
    rule = make_rule()
    warning = enqueue(make_alert(rule, target=target, severity="warning"))
    critical = enqueue(make_alert(rule, target=target, severity="critical", extra_labels={"x": "1"}))
    assert {n.channel for n in warning} == {team}
    assert {n.channel for n in critical} == {team, pager}


def test_a_silence_mutes_notifications_but_the_alert_stays_firing(target, operator_user):
    make_channel("http://127.0.0.1:9/hook")
    alert = make_alert(make_rule(), target=target)
    silence = silence_create(
        data=SilenceInput(
            matchers=[{"name": "target", "op": "=", "value": "db1"}],
            ends_at=timezone.now() + timedelta(hours=1),
            comment="maintenance",
        ),
        actor=operator_user,
        via="ui",
    )
    assert enqueue(alert) == []
    alert.refresh_from_db()
    assert alert.state == "firing"
    # When the silence is over, the next repeat pass tells the channel it is (still) firing.
    assert notification_enqueue_repeats(now=silence.ends_at + timedelta(seconds=1)) == 1


def test_a_critical_alert_inhibits_the_warning_of_the_same_target_and_metric(target):
    make_channel("http://127.0.0.1:9/hook")
    make_alert(make_rule(name="Connections critical"), target=target, severity="critical")
    warning = make_alert(make_rule(name="Connections warning"), target=target, severity="warning")
    assert enqueue(warning) == []
    other_metric = make_alert(make_rule(name="Disk", metric="host_disk_used_percent"), target=target)
    assert len(enqueue(other_metric)) == 1


def test_resolved_goes_only_to_channels_told_it_fired_and_only_with_send_resolved(target):
    told = make_channel("http://127.0.0.1:9/a", name="told")
    quiet = make_channel("http://127.0.0.1:9/b", name="quiet", send_resolved=False)
    alert = make_alert(make_rule(), target=target)
    enqueue(alert)
    make_channel("http://127.0.0.1:9/c", name="new-since")
    alert.state = "resolved"
    alert.save()
    resolved = enqueue(alert)
    assert [n.channel for n in resolved] == [told]
    assert resolved[0].group_key.endswith("|resolved")
    assert quiet.notifications.count() == 1


def test_the_evaluation_tick_checks_repeats_at_most_every_15_seconds(target):
    from alerts.services.evaluation import REPEAT_CHECK_KEY, rules_evaluate_due
    from core.redis_client import get_redis

    get_redis().delete(REPEAT_CHECK_KEY)
    make_channel("http://127.0.0.1:9/hook", repeat_interval_seconds=60)
    rule = make_rule(name="Tuner failed", kind="tuner_failure", metric="", warning_threshold=None,
                     critical_threshold=None, window_seconds=86_400)  # fmt: skip
    alert = make_alert(rule, target=target)
    long_ago = timezone.now() - timedelta(hours=1)
    (told,) = enqueue(alert, now=long_ago)
    Notification.objects.filter(pk=told.pk).update(status="sent", sent_at=long_ago, claimed_at=long_ago)
    assert rules_evaluate_due().repeats == 1
    Notification.objects.filter(status="pending").update(status="sent", sent_at=long_ago, claimed_at=long_ago)
    Notification.objects.update(created_at=long_ago)
    from alerts.models import NotificationItem

    NotificationItem.objects.update(created_at=long_ago)
    assert rules_evaluate_due().repeats == 0  # due again, but checked less than 15 s ago
    get_redis().delete(REPEAT_CHECK_KEY)
    assert rules_evaluate_due().repeats == 1
