"""The transport plug-in interface, its registry, and the HTTP call they share.

A transport turns a Message (one group of alerts for one channel) into a request and sends it.
It raises TransportError for every failure, saying whether to retry (and when) or to give up,
and whether the response means the channel itself is gone (then it is disabled until a
successful "Send test"). Adding a kind = one module with a @register class + one test file.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar

from core import outbound
from core.registry import UnknownPlugin, registry

# Responses that mean the webhook itself is gone or revoked (Slack's answers, and plain 404/410).
DISABLING_STATUS = {404, 410}
DISABLING_BODIES = ("invalid_token", "no_service", "channel_not_found", "channel_is_archived", "no_team")
# Slack's other documented error codes: a fixed vocabulary, so naming the one a receiver answered says
# what to fix without repeating the receiver's own text.
KNOWN_BODIES = (
    *DISABLING_BODIES,
    "invalid_payload",
    "action_prohibited",
    "posting_to_general_channel_denied",
    "too_many_attachments",
    "no_text",
    "team_disabled",
    "user_not_found",
    "rollup_error",
)
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
        severities = {a.severity for a in self.alerts}
        return next((s for s in ("critical", "warning", "info") if s in severities), "warning")


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


def post_json(*, url: str, payload: dict, timeout: float) -> SendResult:
    """POST payload as JSON; classify every outcome that is not a 2xx into a TransportError.

    Through the outbound policy (core/outbound.py), with no redirects followed. The receiver's body is read
    only to recognise the known "gone or revoked" answers (DISABLING_BODIES); what is stored and shown is
    the status with its standard phrase and, at most, which of those known answers it was.
    """
    body = json.dumps(payload).encode()
    request = urllib.request.Request(  # noqa: S310 (http/https checked when the channel is saved)
        url, data=body, method="POST", headers={"Content-Type": "application/json", "User-Agent": "Perfpilot"}
    )
    try:
        with outbound.http_open(request, timeout=timeout) as response:
            return SendResult(response.status, outbound.http_status_text(response.status))
    except outbound.OutboundRefused as exc:
        raise TransportError(f"refused: {exc}", permanent=True) from exc
    except urllib.error.HTTPError as exc:
        head = outbound.http_error_head(exc, limit=RESPONSE_HEAD_CHARS)
        raise _classify(exc.code, head, exc.headers.get("Retry-After")) from exc
    except TimeoutError as exc:
        raise TransportError(f"timed out after {timeout:g} s") from exc
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, TimeoutError | socket.timeout):
            raise TransportError(f"timed out after {timeout:g} s") from exc
        raise TransportError(f"cannot connect: {reason}") from exc
    except (ConnectionError, OSError, http.client.HTTPException) as exc:
        raise TransportError(f"connection failed: {type(exc).__name__}") from exc


def _classify(status: int, head: str, retry_after: str | None) -> TransportError:
    """The error for a non-2xx answer. `head` (the receiver's text) decides, but never appears in it."""
    marker = next((marker for marker in KNOWN_BODIES if marker in head), "")
    reason = outbound.http_status_text(status) + (f" ({marker})" if marker else "")
    if status in DISABLING_STATUS or marker in DISABLING_BODIES:
        return TransportError(
            f"HTTP {reason}: the webhook is gone or revoked; the channel is disabled",
            disable=True,
            status_code=status,
            response_head=reason,
        )
    if status == 429:
        seconds = outbound.retry_after_seconds(retry_after)
        return TransportError(
            f"HTTP 429 rate limited{f', retry after {seconds:g} s' if seconds is not None else ''}",
            retry_after=seconds,
            status_code=status,
            response_head=reason,
        )
    if 300 <= status < 400:
        return TransportError(
            f"HTTP {reason}: redirects are not followed; use the final URL",
            permanent=True,
            status_code=status,
            response_head=reason,
        )
    if status >= 500:
        return TransportError(f"HTTP {reason}", status_code=status, response_head=reason)
    return TransportError(f"HTTP {reason}", permanent=True, status_code=status, response_head=reason)


def monotonic_ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000
