"""The transport plug-in interface, its registry, and the HTTP call they share.

A transport turns a Message (one group of alerts for one channel) into a request and sends it.
It raises TransportError for every failure, saying whether to retry (and when) or to give up,
and whether the response means the channel itself is gone (then it is disabled until a
successful "Send test"). Adding a kind = one module with a @register class + one test file.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar

from core.registry import UnknownPlugin, registry

# Responses that mean the webhook itself is gone or revoked (Slack's answers, and plain 404/410).
DISABLING_STATUS = {404, 410}
DISABLING_BODIES = ("invalid_token", "no_service", "channel_not_found", "channel_is_archived", "no_team")
RESPONSE_HEAD_CHARS = 300


class TransportError(Exception):
    """A send failed. permanent: do not retry; retry_after: seconds the receiver asked us to wait;
    disable: the channel is unusable (revoked or deleted webhook) until someone fixes it."""

    def __init__(
        self,
        message: str,
        *,
        permanent: bool = False,
        retry_after: float | None = None,
        disable: bool = False,
        status_code: int | None = None,
        response_head: str = "",
    ) -> None:
        super().__init__(message)
        self.permanent = permanent or disable
        self.retry_after = retry_after
        self.disable = disable
        self.status_code = status_code
        self.response_head = response_head


@dataclass(frozen=True)
class MessageAlert:
    id: int
    title: str
    state: str  # firing or resolved
    severity: str
    target: str
    metric: str
    value: float | None
    threshold: float | None
    since: datetime | None
    url: str
    summary: str = ""
    message: str = ""
    labels: dict = field(default_factory=dict)
    # The value and threshold as people read them ("2 GiB", "7 collections failed in a row");
    # empty: transports format the raw numbers themselves.
    value_text: str = ""
    threshold_text: str = ""


@dataclass(frozen=True)
class Message:
    channel: str
    state: str  # firing, resolved or test
    alerts: tuple[MessageAlert, ...]
    dashboard_url: str
    is_repeat: bool = False

    @property
    def severity(self) -> str:
        return "critical" if any(a.severity == "critical" for a in self.alerts) else "warning"


@dataclass(frozen=True)
class SendResult:
    status_code: int
    response_head: str


class Transport:
    kind: ClassVar[str]
    label: ClassVar[str]

    def render(self, message: Message) -> dict:
        """The JSON body for this message."""
        raise NotImplementedError

    def send(self, *, url: str, message: Message, timeout: float) -> SendResult:
        """Send the message; raise TransportError on any failure."""
        return post_json(url=url, payload=self.render(message), timeout=timeout)


# Transport modules register themselves here (`@register`); alerts' AppConfig discovers them.
register = registry.plugin("transports")


def transport_for(kind: str) -> Transport:
    try:
        return registry.get("transports", kind)()
    except UnknownPlugin as exc:
        raise TransportError(f"no transport for channel kind {kind!r} ({exc.reason})", permanent=True) from exc


def format_value(value: float | None) -> str:
    if value is None:
        return "no data"
    if abs(value) >= 1e6:
        return f"{value:,.0f}"
    return f"{value:.4g}"


def _retry_after(header: str | None) -> float | None:
    if not header:
        return None
    try:
        return max(0.0, float(header))
    except ValueError:
        return None  # an HTTP date: rare for webhooks; the back-off applies instead


def post_json(*, url: str, payload: dict, timeout: float) -> SendResult:
    """POST payload as JSON; classify every outcome that is not a 2xx into a TransportError."""
    body = json.dumps(payload).encode()
    request = urllib.request.Request(  # noqa: S310 (http/https checked when the channel is saved)
        url, data=body, method="POST", headers={"Content-Type": "application/json", "User-Agent": "Perfpilot"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return SendResult(response.status, response.read(RESPONSE_HEAD_CHARS).decode(errors="replace"))
    except urllib.error.HTTPError as exc:
        head = exc.read(RESPONSE_HEAD_CHARS).decode(errors="replace") if exc.fp else ""
        raise _classify(exc.code, head, exc.headers.get("Retry-After")) from exc
    except TimeoutError as exc:
        raise TransportError(f"timed out after {timeout:g} s") from exc
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, TimeoutError | socket.timeout):
            raise TransportError(f"timed out after {timeout:g} s") from exc
        raise TransportError(f"cannot connect: {reason}") from exc
    except (ConnectionError, OSError) as exc:
        raise TransportError(f"connection failed: {exc}") from exc


def _classify(status: int, head: str, retry_after: str | None) -> TransportError:
    text = head.strip()
    if status in DISABLING_STATUS or any(marker in text for marker in DISABLING_BODIES):
        return TransportError(
            f"HTTP {status} {text[:80]}: the webhook is gone or revoked; the channel is disabled",
            disable=True,
            status_code=status,
            response_head=head,
        )
    if status == 429:
        return TransportError(
            f"HTTP 429 rate limited{f', retry after {retry_after} s' if retry_after else ''}",
            retry_after=_retry_after(retry_after),
            status_code=status,
            response_head=head,
        )
    if status >= 500:
        return TransportError(f"HTTP {status} {text[:80]}", status_code=status, response_head=head)
    return TransportError(f"HTTP {status} {text[:80]}", permanent=True, status_code=status, response_head=head)


def monotonic_ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000
