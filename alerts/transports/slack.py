"""Slack incoming webhooks, with Block Kit.

The message has a fallback `text` (notifications, screen readers), a header with the severity
emoji and title, and one attachment coloured by severity whose blocks list each alert: its title
linked to the dashboard, the target, the value against its threshold, and since when. At most
MAX_ALERTS alerts are listed; the rest are summed up as "+N more". Resolved alerts get their own
message (green, with a check mark).
"""

from __future__ import annotations

from alerts.transports.base import Message, MessageAlert, Transport, format_value, register

MAX_ALERTS = 10
COLOURS = {"critical": "#D7263D", "warning": "#F4A261", "resolved": "#2A9D8F", "test": "#4361EE"}
EMOJI = {"critical": ":rotating_light:", "warning": ":warning:", "resolved": ":white_check_mark:", "test": ":wave:"}


def _when(alert: MessageAlert) -> str:
    if alert.since is None:
        return ""
    ts = int(alert.since.timestamp())
    return f"<!date^{ts}^{{date_short_pretty}} {{time}}|{alert.since.isoformat(timespec='seconds')}>"


def _value_line(alert: MessageAlert) -> str:
    if alert.threshold is None:
        return f"value {format_value(alert.value)}" if alert.value is not None else ""
    return f"value *{format_value(alert.value)}* (threshold {format_value(alert.threshold)})"


def _alert_block(alert: MessageAlert, *, resolved: bool) -> dict:
    parts = [f"*<{alert.url}|{alert.title}>*"]
    detail = []
    if alert.target:
        detail.append(f"target *{alert.target}*")
    if alert.metric:
        detail.append(f"`{alert.metric}`")
    value = _value_line(alert)
    if value:
        detail.append(value)
    when = _when(alert)
    if when:
        detail.append(f"{'was firing since' if resolved else 'since'} {when}")
    parts.append(" · ".join(detail))
    if alert.message:
        parts.append(f"> {alert.message[:300]}")
    return {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(p for p in parts if p)}}


def _fallback(message: Message, tone: str) -> str:
    first = message.alerts[0]
    label = "RESOLVED" if tone == "resolved" else tone.upper()
    text = f"[{label}] {first.title}"
    if first.target:
        text += f" on {first.target}"
    if first.threshold is not None or first.value is not None:
        text += f": {_value_line(first).replace('*', '')}"
    if len(message.alerts) > 1:
        text += f" (+{len(message.alerts) - 1} more)"
    return text


@register
class SlackTransport(Transport):
    kind = "slack"
    label = "Slack incoming webhook"

    def render(self, message: Message) -> dict:
        if message.state == "test":
            text = f"Test message from Perfpilot for channel “{message.channel}”: delivery works."
            return {
                "text": text,
                "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": f"{EMOJI['test']} {text}"}}],
                "attachments": [{"color": COLOURS["test"], "blocks": []}],
            }
        resolved = message.state == "resolved"
        tone = "resolved" if resolved else message.severity
        count = len(message.alerts)
        heading = ("Resolved" if resolved else tone.capitalize()) + (f": {count} alerts" if count > 1 else "")
        title = message.alerts[0].title if count == 1 else message.alerts[0].title + " and others"
        if message.is_repeat:
            heading += " (still firing)"
        blocks = [_alert_block(alert, resolved=resolved) for alert in message.alerts[:MAX_ALERTS]]
        if count > MAX_ALERTS:
            more = f"+{count - MAX_ALERTS} more — <{message.dashboard_url}|see all alerts>"
            blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": more}]})
        header = {
            "type": "section",
            "text": {"type": "mrkdwn", "text": f"{EMOJI[tone]} *{heading}* · {title}"},
        }
        return {
            "text": _fallback(message, tone),
            "blocks": [header],
            "attachments": [{"color": COLOURS[tone], "blocks": blocks}],
        }
