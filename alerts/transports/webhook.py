"""Generic JSON webhooks: every alert of the group, with all its labels, in one POST."""

from __future__ import annotations

from alerts.transports.base import Message, Transport, register


@register
class WebhookTransport(Transport):
    kind = "webhook"
    label = "Generic JSON webhook"

    def render(self, message: Message) -> dict:
        return {
            "version": "1",
            "source": "perfpilot",
            "channel": message.channel,
            "status": message.state,
            "repeat": message.is_repeat,
            "dashboard_url": message.dashboard_url,
            "alerts": [
                {
                    "id": alert.id,
                    "title": alert.title,
                    "status": alert.state,
                    "severity": alert.severity,
                    "target": alert.target,
                    "metric": alert.metric,
                    "value": alert.value,
                    "threshold": alert.threshold,
                    "since": alert.since.isoformat() if alert.since else None,
                    "url": alert.url,
                    "summary": alert.summary,
                    "message": alert.message,
                    "labels": alert.labels,
                }
                for alert in message.alerts
            ],
        }
