"""The generic JSON webhook transport: every alert with its labels, one POST per message."""

from __future__ import annotations

import pytest

from alerts.services.delivery import notification_deliver
from tests.alerts.conftest import enqueue, make_alert, make_channel, make_rule

pytestmark = pytest.mark.django_db


def test_a_webhook_gets_every_alert_of_the_group_with_its_labels(fake_slack, target):
    make_channel(fake_slack.url, kind="webhook", group_wait_seconds=30)
    rule = make_rule()
    alerts = [make_alert(rule, target=target, extra_labels={"db": str(i)}) for i in range(12)]
    (notification,) = {n.pk: n for alert in alerts for n in enqueue(alert)}.values()
    from django.utils import timezone

    from alerts.models import Notification

    Notification.objects.filter(pk=notification.pk).update(due_at=timezone.now())
    assert notification_deliver(notification_id=notification.id).outcome == "sent"
    payload = fake_slack.delivered()[0].payload
    assert payload["status"] == "firing" and payload["source"] == "perfpilot"
    assert len(payload["alerts"]) == 12  # no cap: machines read it
    first = payload["alerts"][0]
    assert (
        first["labels"]["target"] == "db1"
        and first["threshold"] == 80.0
        and first["url"].endswith(f"/alerts/{first['id']}/")
    )


def test_a_webhook_gets_user_text_raw_without_slack_escaping(fake_slack):
    from monitoring.models import Target

    make_channel(fake_slack.url, kind="webhook")
    target = Target.objects.create(name="cache <!channel> & co", kind=Target.Kind.REDIS)
    (notification,) = enqueue(make_alert(make_rule(summary="Memory <b>high</b>"), target=target))
    assert notification_deliver(notification_id=notification.id).outcome == "sent"
    (alert,) = fake_slack.delivered()[0].payload["alerts"]
    assert (alert["target"], alert["title"]) == ("cache <!channel> & co", "Memory <b>high</b>")
    assert alert["labels"]["target"] == "cache <!channel> & co"
