"""Slack incoming webhooks, with Block Kit.

The message has a fallback `text` (notifications, screen readers), a header with the severity
emoji and title, and one attachment coloured by severity whose blocks list each alert: its title
linked to the dashboard, the target, the value against its threshold, and since when. At most
MAX_ALERTS alerts are listed; the rest are summed up as "+N more". Resolved alerts get their own
message (green, with a check mark).

Every text we did not write ourselves (titles, targets, metrics, summaries, channel names) goes
through `escape`: Slack reads `<...>` as a link or a mention (`<!channel>` pings everybody) and `&`
as the start of an entity, so those three characters are escaped in every text field, the
fallback `text` included, as https://api.slack.com/reference/surfaces/formatting#escaping says.
"""

from __future__ import annotations

from urllib.parse import quote

from alerts.transports.base import Message, MessageAlert, Transport, format_value, register

MAX_ALERTS = 10
COLOURS = {"critical": "#D7263D", "warning": "#F4A261", "info": "#6C757D", "resolved": "#2A9D8F", "test": "#4361EE"}
EMOJI = {
    "critical": ":rotating_light:",
    "warning": ":warning:",
    "info": ":information_source:",
    "resolved": ":white_check_mark:",
    "test": ":wave:",
}


# Characters a URL keeps as they are; "<", ">" and "|" (which would end a link) are percent-encoded.
URL_SAFE = ":/?#[]@!$&'()*+,;=%~"


def escape(text: str) -> str:
    """Plain text as Slack text: only &, < and > are escaped (Slack's rule; no HTML entities beyond those)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def link(url: str, text: str) -> str:
    """A `<url|text>` link: the URL percent-encoded so it cannot end the link early, the text escaped."""
    return f"<{escape(quote(url, safe=URL_SAFE))}|{escape(text)}>"


def _when(alert: MessageAlert) -> str:
    if alert.since is None:
        return ""
    ts = int(alert.since.timestamp())
    return f"<!date^{ts}^{{date_short_pretty}} {{time}}|{alert.since.isoformat(timespec='seconds')}>"


def _value_line(alert: MessageAlert) -> str:
    """The value (bold) against its threshold, already escaped; empty for an alert without a value."""
    value = escape(alert.value_text or format_value(alert.value))
    if alert.threshold is None:
        if alert.value is None:
            return ""
        return value if alert.value_text else f"value {value}"  # a value_text says what it counts
    threshold = escape(alert.threshold_text or format_value(alert.threshold))
    return f"value *{value}* (threshold {threshold})"


def _alert_block(alert: MessageAlert, *, resolved: bool) -> dict:
    parts = [f"*{link(alert.url, alert.title)}*"]
    detail = []
    if alert.target:
        detail.append(f"target *{escape(alert.target)}*")
    if alert.metric:
        detail.append(f"`{escape(alert.metric)}`")
    value = _value_line(alert)
    if value:
        detail.append(value)
    when = _when(alert)
    if when:
        detail.append(f"{'was firing since' if resolved else 'since'} {when}")
    parts.append(" · ".join(detail))
    if alert.message:
        parts.append(f"> {escape(alert.message[:300])}")
    return {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(p for p in parts if p)}}


def _fallback(message: Message, tone: str) -> str:
    first = message.alerts[0]
    label = "RESOLVED" if tone == "resolved" else tone.upper()
    text = f"[{label}] {escape(first.title)}"
    if first.target:
        text += f" on {escape(first.target)}"
    if first.threshold is not None or first.value is not None:
        text += f": {_value_line(first).replace('*', '')}"  # already escaped
    if len(message.alerts) > 1:
        text += f" (+{len(message.alerts) - 1} more)"
    return text


@register
class SlackTransport(Transport):
    kind = "slack"
    label = "Slack incoming webhook"

    def render(self, message: Message) -> dict:
        if message.state == "test":
            text = f"Test message from Perfpilot for channel “{escape(message.channel)}”: delivery works."
            return {
                "text": text,
                "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": f"{EMOJI['test']} {text}"}}],
                "attachments": [{"color": COLOURS["test"], "blocks": []}],
            }
        resolved = message.state == "resolved"
        tone = "resolved" if resolved else message.severity
        count = len(message.alerts)
        heading = ("Resolved" if resolved else tone.capitalize()) + (f": {count} alerts" if count > 1 else "")
        title = escape(message.alerts[0].title) + (" and others" if count > 1 else "")
        if message.is_repeat:
            heading += " (still firing)"
        blocks = [_alert_block(alert, resolved=resolved) for alert in message.alerts[:MAX_ALERTS]]
        if count > MAX_ALERTS:
            more = f"+{count - MAX_ALERTS} more — {link(message.dashboard_url, 'see all alerts')}"
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
