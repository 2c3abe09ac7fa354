"""One collection of one target: run its collector, store samples, record its health.

A failing target is recorded as down with its error and never raises to the caller, so one
bad target cannot stop the others. A Redis lock keeps two collections of one target apart.

A target may be deleted while it is being collected. Every write of a collection happens in a
transaction that first takes a KEY SHARE lock on the target's row, and `target_delete` locks
that row FOR UPDATE before it gathers what to delete: either the collection commits first and
the delete then removes what it wrote, or the delete commits first and the collection finds no
row, stores nothing and ends quietly (no foreign key violation in the worker).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from operator import attrgetter

from django.db import connection, transaction
from django.utils import timezone

from core.locks import lock_acquire, lock_key
from monitoring.collectors.base import COUNTER, CUMULATIVE, CollectorError, CollectResult, Measurement, collector_for
from monitoring.models import CollectorState, QueryStat, QueryText, Series, Target
from monitoring.storage import SeriesSpec, labels_key, samples_write, series_resolve

logger = logging.getLogger(__name__)

_SERIES_KIND = {COUNTER: Series.Kind.RATE, CUMULATIVE: Series.Kind.COUNTER}
STATEMENTS_KEPT_PER_INTERVAL = 200  # top queries by time spent, per snapshot
_STATEMENT_FIELDS = ("calls", "total_time_ms", "rows", "shared_blks_hit", "shared_blks_read")
_statement_counters = attrgetter(*_STATEMENT_FIELDS)


@dataclass
class CollectionOutcome:
    target_id: int
    ok: bool
    samples: int = 0
    statements: int = 0
    duration_ms: float = 0.0
    error: str = ""
    notes: list[str] = field(default_factory=list)
    skipped: bool = False


def collect_target(*, target: Target) -> CollectionOutcome:
    """Collect once, unless another collection of this target is still running."""
    lock = lock_acquire(lock_key("collect", target.id))
    if lock is None:
        return CollectionOutcome(target_id=target.id, ok=True, skipped=True)
    with lock:
        return _collect(target)


def _collect(target: Target) -> CollectionOutcome:
    started = time.perf_counter()
    now = timezone.now()
    saved = _state_read(target.id)
    elapsed = (now - saved.collected_at).total_seconds() if saved and saved.collected_at else None
    collector_state = dict(saved.counters.get("collector", {})) if saved else {}
    try:
        collector = collector_for(target, state=collector_state, elapsed_seconds=elapsed)
        result = collector.collect()
    except CollectorError as exc:
        return _record_failure(target, now, str(exc), started)
    except Exception as exc:  # a collector bug must not stop collection of other targets
        logger.exception("collector %s failed on target %s", target.kind, target.id)
        return _record_failure(target, now, f"{type(exc).__name__}: {exc}", started)
    duration_ms = (time.perf_counter() - started) * 1000
    stored = _store(target, now, result, duration_ms, collector.state, saved)
    if stored is None:
        return _deleted(target, duration_ms)
    samples, statements = stored
    _record_success(target.id, now, duration_ms, "; ".join(result.notes))
    return CollectionOutcome(
        target_id=target.id,
        ok=True,
        samples=samples,
        statements=statements,
        duration_ms=duration_ms,
        notes=result.notes,
    )


def _deleted(target: Target, duration_ms: float) -> CollectionOutcome:
    logger.info("target %s was deleted during its collection; nothing stored", target.id)
    return CollectionOutcome(target_id=target.id, ok=False, error="deleted", duration_ms=duration_ms, skipped=True)


def _target_still_there(target_id: int) -> bool:
    """Lock the target's row against deletion until the transaction ends; False if it is gone."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT 1 FROM {_TARGET_TABLE} WHERE id = %s FOR KEY SHARE", [target_id])  # noqa: S608 - our table
        return cursor.fetchone() is not None


@transaction.atomic
def _record_failure(target: Target, now: datetime, message: str, started: float) -> CollectionOutcome:
    duration_ms = (time.perf_counter() - started) * 1000
    if not _target_still_there(target.id):
        return _deleted(target, duration_ms)
    Target.objects.filter(pk=target.pk).update(
        status=Target.Status.DOWN,
        last_attempt_at=now,
        last_error=message[:2000],
        last_error_at=now,
        last_duration_ms=round(duration_ms, 2),
        consecutive_failures=target.consecutive_failures + 1,
    )
    _write_health_samples(target, now, up=False, duration_ms=duration_ms)
    return CollectionOutcome(target_id=target.id, ok=False, error=message, duration_ms=duration_ms)


def _health_points(*, up: bool, duration_ms: float) -> list[tuple[SeriesSpec, float]]:
    return [
        (SeriesSpec("up", {}), 1.0 if up else 0.0),
        (SeriesSpec("collect_duration_seconds", {}, unit="s"), duration_ms / 1000),
    ]


def _write_points(target: Target, now: datetime, points: list[tuple[SeriesSpec, float]]) -> int:
    ids = series_resolve(target_id=target.id, specs=[spec for spec, _ in points])
    return samples_write([(sid, now, value) for sid, (_, value) in zip(ids, points, strict=True)])


def _write_health_samples(target: Target, now: datetime, *, up: bool, duration_ms: float) -> int:
    return _write_points(target, now, _health_points(up=up, duration_ms=duration_ms))


@transaction.atomic
def _store(
    target: Target,
    now: datetime,
    result: CollectResult,
    duration_ms: float,
    collector_state: dict,
    saved: _SavedState | None,
) -> tuple[int, int] | None:
    """Samples and statements stored, or None when the target was deleted meanwhile."""
    if not _target_still_there(target.id):
        return None
    # Lock the state row without decoding its counters again (with hundreds of statements they
    # are the costliest part of a collection): the copy read before collecting serves unless
    # another collection wrote in between.
    previous_at = _state_lock(target.id)
    if saved is not None and saved.collected_at == previous_at:
        stored = saved.counters
    else:
        stored = (_state_read(target.id) or _SavedState(None, {})).counters
    elapsed = (now - previous_at).total_seconds() if previous_at else None
    counters = dict(stored.get("series", {}))
    points: list[tuple[SeriesSpec, float]] = []
    for measurement in result.measurements:
        value = _sample_value(measurement, counters, elapsed)
        if value is not None:
            kind = _SERIES_KIND.get(measurement.kind, Series.Kind.GAUGE)
            points.append((SeriesSpec(measurement.metric, measurement.labels, kind, measurement.unit), value))
    statements = 0
    statement_state = stored.get("statements", {})
    if result.statements is not None:
        statements, statement_state = _store_statements(target, now, result, statement_state, elapsed)
    _state_write(target.id, now, {"series": counters, "statements": statement_state, "collector": collector_state})

    # Health and metrics in one COPY: one write per collection whatever the kind.
    written = _write_points(target, now, _health_points(up=True, duration_ms=duration_ms) + points)
    return written, statements


# --- bookkeeping in plain SQL ---------------------------------------------------------------
# These statements run for every target at every interval. Building an ORM query costs ~0.3 ms
# of CPU, more than PostgreSQL takes to answer it, and four of them were a tenth of a cycle.

_STATE_TABLE = CollectorState._meta.db_table
_TARGET_TABLE = Target._meta.db_table


@dataclass(frozen=True)
class _SavedState:
    collected_at: datetime | None
    counters: dict


def _state_read(target_id: int) -> _SavedState | None:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT collected_at, counters FROM {_STATE_TABLE} WHERE target_id = %s", [target_id])  # noqa: S608 - our table
        row = cursor.fetchone()
    if row is None:
        return None
    counters = json.loads(row[1]) if isinstance(row[1], str) else row[1]
    return _SavedState(row[0], counters or {})


def _state_lock(target_id: int) -> datetime | None:
    """Lock the target's state row (creating it on its first collection); its collected_at."""
    select = f"SELECT collected_at FROM {_STATE_TABLE} WHERE target_id = %s FOR UPDATE"  # noqa: S608 - our table
    with connection.cursor() as cursor:
        cursor.execute(select, [target_id])
        row = cursor.fetchone()
        if row is None:
            cursor.execute(
                f"INSERT INTO {_STATE_TABLE} (target_id, collected_at, counters) VALUES (%s, NULL, '{{}}') "  # noqa: S608 - our table
                "ON CONFLICT (target_id) DO NOTHING",
                [target_id],
            )
            cursor.execute(select, [target_id])
            row = cursor.fetchone()
    return row[0]


def _state_write(target_id: int, collected_at: datetime, counters: dict) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {_STATE_TABLE} SET collected_at = %s, counters = %s::jsonb WHERE target_id = %s",  # noqa: S608 - our table
            [collected_at, json.dumps(counters), target_id],
        )


def _record_success(target_id: int, now: datetime, duration_ms: float, notes: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {_TARGET_TABLE} SET status = %s, last_success_at = %s, last_attempt_at = %s, "  # noqa: S608 - our table
            "last_duration_ms = %s, consecutive_failures = 0, last_error = '', last_notes = %s WHERE id = %s",
            [Target.Status.UP.value, now, now, round(duration_ms, 2), notes, target_id],
        )


def _sample_value(measurement: Measurement, counters: dict, elapsed: float | None) -> float | None:
    """Gauges pass through; counters become per-second rates against the previous collection."""
    if measurement.kind != COUNTER:
        return float(measurement.value)
    key = f"{measurement.metric}|{labels_key(measurement.labels)}"
    previous = counters.get(key)
    counters[key] = measurement.value
    if previous is None or not elapsed or elapsed <= 0 or measurement.value < previous:
        return None  # first sight, or the counter was reset (server restart): no rate this time
    return (measurement.value - previous) / elapsed


def _store_statements(target, now, result, previous: dict, elapsed) -> tuple[int, dict]:
    current = {str(s.queryid): _statement_counters(s) for s in result.statements}
    deltas = []
    zeros = (0,) * len(_STATEMENT_FIELDS)
    # No baseline yet (first run, or the extension was just enabled): lifetime totals are no delta.
    for stmt in result.statements if previous and elapsed is not None else ():
        key = str(stmt.queryid)
        counters = current[key]
        # A query first seen in this interval started from zero: its calls belong to this interval.
        before = previous.get(key, zeros)
        if before[0] == counters[0]:
            continue  # not called in this interval: most statements, so skipped before any arithmetic
        delta = [now_v - then_v for now_v, then_v in zip(counters, before, strict=True)]
        if delta[0] <= 0 or any(d < 0 for d in delta):
            continue  # no calls in this interval, or stats were reset
        deltas.append((stmt, delta))
    deltas.sort(key=lambda item: item[1][1], reverse=True)
    kept = deltas[:STATEMENTS_KEPT_PER_INTERVAL]
    if kept:
        known = set(
            QueryText.objects.filter(target=target, queryid__in=[s.queryid for s, _ in kept]).values_list(
                "queryid", flat=True
            )
        )
        QueryText.objects.bulk_create(
            [
                QueryText(target=target, queryid=s.queryid, database=s.database, query=s.query)
                for s, _ in kept
                if s.queryid not in known
            ],
            ignore_conflicts=True,
        )
        QueryStat.objects.bulk_create(
            [
                QueryStat(
                    target=target,
                    queryid=s.queryid,
                    collected_at=now,
                    interval_seconds=elapsed,
                    calls=d[0],
                    total_time_ms=d[1],
                    rows=d[2],
                    shared_blks_hit=d[3],
                    shared_blks_read=d[4],
                )
                for s, d in kept
            ]
        )
    return len(kept), current
