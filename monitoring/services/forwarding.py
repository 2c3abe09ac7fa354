"""Remote-write forwarding: every sample stored while PERFPILOT_FORWARD_REMOTE_WRITE_URL is set is sent on
to a Prometheus remote-write endpoint (Mimir, VictoriaMetrics, Thanos, a Prometheus receiver).

The queue is durable: monitoring.storage writes each COPY's records (LZ4-compressed) to `ForwardOutbox`
in the samples' own transaction. `forwarding_run` (beat's `forward_samples_task`, one run at a time under a Redis lock)
takes the oldest rows up to PERFPILOT_FORWARD_BATCH_SAMPLES, encodes one snappy `WriteRequest` (the
receiver's message definitions), POSTs it through the outbound policy and, on the answer:

- 2xx: deletes the rows (sent); the next batch follows at once.
- 5xx, 429, no connection, timeout: keeps the rows and waits (Retry-After when the answer has one,
  else exponential back-off from PERFPILOT_FORWARD_RETRY_BASE_SECONDS to _CAP_SECONDS) before trying
  the same batch again, as Prometheus's queue manager does.
- any other 4xx: the remote end refuses the data itself (out of order, bad labels): the batch is
  recorded as rejected (counted, its reason kept as the last error) and deleted, and the run goes on.

Rows leave the outbox only after the remote end answered, so a run killed at any point loses nothing:
its lock expires (or is freed at once when its owner is provably dead) and the next run sends the batch
again; Prometheus-compatible receivers take a repeated identical sample as a no-op.
"""

from __future__ import annotations

import http.client
import logging
import random
import re
import socket
import time
import urllib.error
import urllib.request
from base64 import b64encode
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from core import outbound
from core.conninfo import mask_url
from core.locks import lock_acquire, lock_break_if_owner_gone, lock_key
from monitoring.models import ForwardingState, ForwardOutbox, Series
from monitoring.protocols.remote_write import write_request_encode
from monitoring.storage import _PG_EPOCH_UNIX, outbox_records

logger = logging.getLogger(__name__)

LOCK_KEY = lock_key("forward")
LOCK_TTL_SECONDS = 60.0
RUN_BUDGET_SECONDS = 50.0  # beat sends a run every few seconds; one run never holds the lock much longer
ERROR_HEAD_CHARS = 300
_INVALID_NAME = re.compile(r"[^a-zA-Z0-9_:]")
_INVALID_LABEL = re.compile(r"[^a-zA-Z0-9_]")
_PRINTABLE = re.compile(r"[^\x20-\x7e]")


class ForwardError(Exception):
    """A send that did not succeed. permanent: the remote end refused the data (4xx but 429)."""

    def __init__(self, message: str, *, permanent: bool = False, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.retry_after = retry_after


@dataclass
class RunResult:
    outcome: str  # off, locked, waiting, idle, sent, retrying, budget
    sent_samples: int = 0
    rejected_samples: int = 0
    error: str = ""


def forwarding_enabled() -> bool:
    return bool(settings.FORWARD_REMOTE_WRITE_URL)


def forwarding_state() -> ForwardingState:
    state, _ = ForwardingState.objects.get_or_create(pk=1)
    return state


def forwarding_run(*, now: datetime | None = None, budget_seconds: float = RUN_BUDGET_SECONDS) -> RunResult:
    """Send queued batches until the queue is empty, a send fails, or the budget is spent."""
    if not forwarding_enabled():
        return RunResult("off")
    lock_break_if_owner_gone(LOCK_KEY)
    lock = lock_acquire(LOCK_KEY, ttl=LOCK_TTL_SECONDS, label="remote-write forwarding")
    if lock is None:
        return RunResult("locked")
    with lock:
        return _run(now=now, budget_seconds=budget_seconds)


def _run(*, now: datetime | None, budget_seconds: float) -> RunResult:
    state = forwarding_state()
    endpoint = mask_url(settings.FORWARD_REMOTE_WRITE_URL)[:500]
    if state.endpoint != endpoint:
        ForwardingState.objects.filter(pk=1).update(endpoint=endpoint)
    if state.next_attempt_at is not None and state.next_attempt_at > (now or timezone.now()):
        return RunResult("waiting")
    _queue_trim()
    result = RunResult("idle")
    started = time.monotonic()
    while time.monotonic() - started < budget_seconds:
        batch = _batch_next()
        if batch is None:
            return result
        ids, records = batch
        attempted = now or timezone.now()
        try:
            forward_post(body=_encode(records))
        except ForwardError as exc:
            if not exc.permanent:
                _record_retry(exc, at=attempted)
                result.outcome, result.error = "retrying", str(exc)
                return result
            _record_rejected(ids, len(records), exc, at=attempted)
            result.rejected_samples += len(records)
            result.outcome, result.error = "sent", str(exc)
            continue
        _record_sent(ids, len(records), at=attempted)
        result.sent_samples += len(records)
        result.outcome = "sent"
    result.outcome = "budget"
    return result


def _queue_trim() -> None:
    """Past PERFPILOT_FORWARD_MAX_QUEUE queued samples, drop the oldest rows (counted as dropped)."""
    table = connection.ops.quote_name(ForwardOutbox._meta.db_table)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"WITH newest AS (SELECT id, sum(samples) OVER (ORDER BY id DESC) AS upto FROM {table}) "  # noqa: S608
            f"DELETE FROM {table} t USING newest n WHERE t.id = n.id AND n.upto > %s RETURNING t.samples",
            [settings.FORWARD_MAX_QUEUE],
        )
        dropped = sum(row[0] for row in cursor.fetchall())
        if dropped:
            ForwardingState.objects.filter(pk=1).update(dropped_samples=F("dropped_samples") + dropped)
            logger.warning("remote-write forwarding: queue over its limit, dropped the oldest %s samples", dropped)


def _batch_next() -> tuple[list[int], np.ndarray] | None:
    """The oldest outbox rows, up to FORWARD_BATCH_SAMPLES samples (always at least one row)."""
    heads = list(ForwardOutbox.objects.order_by("id").values_list("id", "samples")[:200])
    if not heads:
        return None
    ids: list[int] = []
    total = 0
    for row_id, samples in heads:
        if ids and total + samples > settings.FORWARD_BATCH_SAMPLES:
            break
        ids.append(row_id)
        total += samples
    rows = ForwardOutbox.objects.filter(id__in=ids).order_by("id").values_list("rows", flat=True)
    return ids, np.concatenate([outbox_records(bytes(data)) for data in rows])


def _series_labels(series_ids: list[int]) -> dict[int, dict[str, str]]:
    """Prometheus labels per series: __name__, its own labels, and job/instance from its target."""
    labels: dict[int, dict[str, str]] = {}
    rows = Series.objects.filter(id__in=series_ids).values_list(
        "id", "metric", "labels", "target__kind", "target__name"
    )
    for series_id, metric, own, target_kind, target_name in rows:
        named = {_label_name(key): str(value) for key, value in (own or {}).items() if value not in ("", None)}
        if target_name:
            named.setdefault("job", target_kind)
            named.setdefault("instance", target_name)
        name = _INVALID_NAME.sub("_", metric)
        named["__name__"] = name if not name[:1].isdigit() else f"_{name}"
        labels[series_id] = named
    return labels


def _label_name(key: str) -> str:
    name = _INVALID_LABEL.sub("_", key)
    return name if not name[:1].isdigit() else f"_{name}"


def _encode(records: np.ndarray) -> bytes:
    """One snappy WriteRequest: samples grouped by series, each series in time order."""
    series_ids = records["series_id"]
    stamps_ms = (records["ts"] + int(_PG_EPOCH_UNIX * 1_000_000)) // 1000
    order = np.lexsort((stamps_ms, series_ids))
    series_ids, stamps_ms, values = series_ids[order], stamps_ms[order], records["value"][order]
    unique, starts = np.unique(series_ids, return_index=True)
    labels = _series_labels([int(sid) for sid in unique])
    ends = [*starts[1:], len(series_ids)]
    timeseries = []
    for sid, start, end in zip(unique, starts, ends, strict=True):
        named = labels.get(int(sid))
        if named is None:  # its series was deleted since (a target removed with its history)
            continue
        timeseries.append((named, list(zip(values[start:end].tolist(), stamps_ms[start:end].tolist(), strict=True))))
    return write_request_encode(timeseries)


def forward_post(*, body: bytes, url: str | None = None) -> int:
    """POST one remote-write body; the status on 2xx, ForwardError otherwise (through the outbound policy)."""
    url = url or settings.FORWARD_REMOTE_WRITE_URL
    headers = {
        "Content-Type": "application/x-protobuf",
        "Content-Encoding": "snappy",
        "X-Prometheus-Remote-Write-Version": "0.1.0",
        "User-Agent": "Perfpilot",
    }
    if settings.FORWARD_REMOTE_WRITE_TOKEN:
        headers["Authorization"] = f"Bearer {settings.FORWARD_REMOTE_WRITE_TOKEN}"
    elif settings.FORWARD_REMOTE_WRITE_USER:
        pair = f"{settings.FORWARD_REMOTE_WRITE_USER}:{settings.FORWARD_REMOTE_WRITE_PASSWORD}".encode()
        headers["Authorization"] = f"Basic {b64encode(pair).decode()}"
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)  # noqa: S310 - checked at start
    timeout = settings.FORWARD_TIMEOUT_SECONDS
    try:
        with outbound.http_open(request, timeout=timeout) as response:
            return response.status
    except outbound.OutboundRefused as exc:
        raise ForwardError(f"refused: {exc}") from exc  # retried: the operator may change the policy
    except urllib.error.HTTPError as exc:
        head = outbound.http_error_head(exc, limit=ERROR_HEAD_CHARS)
        raise _classify(exc.code, _PRINTABLE.sub(" ", head).strip(), exc.headers.get("Retry-After")) from exc
    except TimeoutError as exc:
        raise ForwardError(f"timed out after {timeout:g} s") from exc
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError | socket.timeout):
            raise ForwardError(f"timed out after {timeout:g} s") from exc
        raise ForwardError(f"cannot connect: {exc.reason}") from exc
    except (OSError, http.client.HTTPException) as exc:
        raise ForwardError(f"connection failed: {type(exc).__name__}") from exc


def _classify(status: int, head: str, retry_after: str | None) -> ForwardError:
    reason = f"HTTP {outbound.http_status_text(status)}" + (f": {head}" if head else "")
    if status == 429 or status >= 500:
        return ForwardError(reason, retry_after=outbound.retry_after_seconds(retry_after))
    return ForwardError(reason, permanent=True)


def backoff_seconds(*, attempt: int) -> float:
    """Capped exponential back-off with jitter: uniform(0.5, 1) x min(cap, base x 2^(attempt-1))."""
    ceiling = min(settings.FORWARD_RETRY_CAP_SECONDS, settings.FORWARD_RETRY_BASE_SECONDS * 2 ** max(0, attempt - 1))
    return ceiling * random.uniform(0.5, 1.0)


def _record_retry(exc: ForwardError, *, at: datetime) -> None:
    state = forwarding_state()
    attempt = state.attempt + 1
    delay = exc.retry_after if exc.retry_after is not None else backoff_seconds(attempt=attempt)
    ForwardingState.objects.filter(pk=1).update(
        attempt=attempt,
        failed_requests=F("failed_requests") + 1,
        next_attempt_at=at + timedelta(seconds=delay),
        last_attempt_at=at,
        last_error=f"{exc} (retry in {delay:.3g} s)"[:2000],
        last_error_at=at,
    )
    logger.warning("remote-write forwarding failed (attempt %s, retry in %.3g s): %s", attempt, delay, exc)


def _record_rejected(ids: list[int], samples: int, exc: ForwardError, *, at: datetime) -> None:
    with transaction.atomic():
        ForwardOutbox.objects.filter(id__in=ids).delete()
        ForwardingState.objects.filter(pk=1).update(
            attempt=0,
            next_attempt_at=None,
            rejected_requests=F("rejected_requests") + 1,
            rejected_samples=F("rejected_samples") + samples,
            last_attempt_at=at,
            last_error=f"{samples} samples rejected: {exc}"[:2000],
            last_error_at=at,
        )
    logger.warning("remote-write forwarding: the remote end rejected %s samples: %s", samples, exc)


def _record_sent(ids: list[int], samples: int, *, at: datetime) -> None:
    with transaction.atomic():
        ForwardOutbox.objects.filter(id__in=ids).delete()
        ForwardingState.objects.filter(pk=1).update(
            attempt=0,
            next_attempt_at=None,
            sent_requests=F("sent_requests") + 1,
            sent_samples=F("sent_samples") + samples,
            last_attempt_at=at,
            last_success_at=at,
        )
