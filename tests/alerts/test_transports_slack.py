"""The Slack transport against the fake Slack: the exact Block Kit JSON, with user text escaped."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from alerts.models import AlertRule
from alerts.services.delivery import notification_deliver
from alerts.transports.base import Message, MessageAlert
from alerts.transports.slack import SlackTransport
from monitoring.models import Target
from tests.alerts.conftest import enqueue, make_alert, make_channel, make_rule

SINCE = datetime(2026, 12, 1, 8, 30, tzinfo=UTC)


@pytest.mark.django_db
def test_a_mention_and_markup_in_user_text_are_escaped_in_every_field(fake_slack, settings):
    settings.PUBLIC_URL = "https://perfpilot.example.com"
    make_channel(fake_slack.url)
    target = Target.objects.create(name="cache <!channel> & co", kind=Target.Kind.REDIS)
    rule = make_rule(name="Redis memory", metric="redis_used_memory_bytes", summary="Memory <b>high</b>",
                     warning_threshold=2 * 1024**3, critical_threshold=4 * 1024**3)  # fmt: skip
    alert = make_alert(rule, target=target, value=3 * 1024**3, threshold=2 * 1024**3, now=SINCE)
    alert.message = "used_memory > maxmemory & <!here>"
    alert.save()
    (notification,) = enqueue(alert)

    assert notification_deliver(notification_id=notification.id).outcome == "sent"

    (request,) = fake_slack.delivered()
    title = "Memory &lt;b&gt;high&lt;/b&gt;"
    since = f"<!date^{int(SINCE.timestamp())}^{{date_short_pretty}} {{time}}|2026-12-01T08:30:00+00:00>"
    assert request.payload == {
        "text": f"[WARNING] {title} on cache &lt;!channel&gt; &amp; co: value 3 GiB (threshold 2 GiB)",
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": f":warning: *Warning* · {title}"}}],
        "attachments": [
            {
                "color": "#F4A261",
                "blocks": [
                    {
                        "type": "section",
                        "text": {
                            "type": "mrkdwn",
                            "text": (
                                f"*<https://perfpilot.example.com/alerts/{alert.id}/|{title}>*\n"
                                "target *cache &lt;!channel&gt; &amp; co* · `redis_used_memory_bytes` · "
                                "value *3 GiB* (threshold 2 GiB) · "
                                f"since {since}\n"
                                "> used_memory &gt; maxmemory &amp; &lt;!here&gt;"
                            ),
                        },
                    }
                ],
            }
        ],
    }


def test_a_link_url_cannot_end_early_and_its_text_is_escaped():
    alert = MessageAlert(1, "a|b <i>", "firing", "critical", "", "", None, None, None, "https://x.test/a?b=1&c=<2>|")
    payload = SlackTransport().render(Message("ops", "firing", (alert,), "https://x.test/alerts/"))
    body = payload["attachments"][0]["blocks"][0]["text"]["text"]
    assert body == "*<https://x.test/a?b=1&amp;c=%3C2%3E%7C|a|b &lt;i&gt;>*"


def test_the_test_message_escapes_the_channel_name():
    payload = SlackTransport().render(Message("ops <!everyone>", "test", (), "https://x.test/alerts/"))
    expected = "Test message from Perfpilot for channel “ops &lt;!everyone&gt;”: delivery works."
    assert payload["text"] == expected
    assert payload["blocks"][0]["text"]["text"] == f":wave: {expected}"


@pytest.mark.django_db
def test_a_target_down_alert_says_how_many_collections_failed(fake_slack, target):
    make_channel(fake_slack.url)
    rule = make_rule(name="Target down", kind=AlertRule.Kind.TARGET_DOWN, metric="", warning_threshold=None,
                     critical_threshold=None)  # fmt: skip
    (notification,) = enqueue(make_alert(rule, target=target, severity="critical", value=7.0, threshold=None))
    notification_deliver(notification_id=notification.id)
    payload = fake_slack.delivered()[0].payload
    assert payload["text"] == "[CRITICAL] Target down on db1: 7 collections failed in a row"
    assert "· 7 collections failed in a row" in payload["attachments"][0]["blocks"][0]["text"]["text"]
