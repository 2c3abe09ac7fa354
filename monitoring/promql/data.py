"""Reading what PromQL selectors ask for: the series whose labels match, and their raw samples.

A series' PromQL labels are its labels plus `__name__` (its metric); a collected series (one with
a target) also carries `target`, the target's name, unless it has a label of that name already.
Samples are read in milliseconds, as Prometheus counts them: raw within the raw retention, rollup
averages before it.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import psycopg
from django.conf import settings
from django.db import OperationalError, connection, transaction
from psycopg.errors import QueryCanceled

from monitoring.models import Series
from monitoring.promql.errors import PromQLError


@dataclass(frozen=True)
class Matcher:
    name: str
    op: str  # "=", "!=", "=~", "!~"
    value: str

    def matches(self, labels: dict[str, str]) -> bool:
        actual = labels.get(self.name, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        found = _anchored(self.value).fullmatch(actual) is not None
        return found if self.op == "=~" else not found


@lru_cache(maxsize=256)
def _anchored(pattern: str) -> re.Pattern[str]:
    # Prometheus anchors every matcher regex at both ends; fullmatch does the same.
    return re.compile(pattern, re.DOTALL)


@dataclass
class StoredSeries:
    labels: dict[str, str]  # with __name__
    stamps: np.ndarray  # int64 milliseconds, ascending
    values: np.ndarray  # float64


def series_match(*, matchers: list[Matcher]) -> list[tuple[int, dict[str, str]]]:
    """(series id, PromQL labels) of every stored series all matchers accept."""
    queryset = Series.objects.all()
    for matcher in matchers:
        if matcher.name == "__name__" and matcher.op == "=":
            queryset = queryset.filter(metric=matcher.value)
    found = []
    for series_id, metric, labels, target_name in queryset.values_list("id", "metric", "labels", "target__name"):
        full = {**(labels or {}), "__name__": metric}
        if target_name is not None:
            full.setdefault("target", target_name)
        if all(matcher.matches(full) for matcher in matchers):
            found.append((series_id, full))
    return found


# Older than the raw retention, a rollup bucket stands for one sample: its average, at its middle
# (hourly buckets before the 1-minute retention, minute buckets after it, raw samples from the raw
# retention on). docs/api.md says what that means for each function.
# Each series' samples come back as two binary strings (its timestamps as PostgreSQL sends them,
# big-endian microseconds since 2000, and its values as big-endian float8), read as numpy arrays:
# several times cheaper than a Python tuple per sample. PostgreSQL neither sorts them (numpy does,
# cheaply, where they are not in order already) nor converts each timestamp (numeric arithmetic).
_SAMPLES_SQL = """
        SELECT series_id, bucket + interval '30 minutes', sum / count
        FROM monitoring_rollup_1h
        WHERE series_id = ANY(%(ids)s) AND bucket >= to_timestamp(%(start)s::float8 / 1000 - 3600)
          AND bucket < to_timestamp(%(minute_from)s::float8 / 1000)
        UNION ALL
        SELECT series_id, bucket + interval '30 seconds', sum / count
        FROM monitoring_rollup_1m
        WHERE series_id = ANY(%(ids)s) AND bucket >= to_timestamp(%(start)s::float8 / 1000 - 60)
          AND bucket >= to_timestamp(%(minute_from)s::float8 / 1000)
          AND bucket < to_timestamp(%(raw_from)s::float8 / 1000)
        UNION ALL
        SELECT series_id, ts, value
        FROM monitoring_sample
        WHERE series_id = ANY(%(ids)s) AND ts >= to_timestamp(greatest(%(start)s, %(raw_from)s)::float8 / 1000)
          AND ts <= to_timestamp(%(end)s::float8 / 1000)
"""
_SAMPLES_BY_SERIES_SQL = """
    SELECT series_id, string_agg(timestamptz_send(t), ''), string_agg(float8send(value), '')
    FROM ({samples}) AS d (series_id, t, value)
    GROUP BY series_id
"""
_PG_EPOCH_MS = 946_684_800_000  # 2000-01-01, where PostgreSQL's binary timestamps count from
_DAY_MS = 86_400_000


def _retention_starts() -> tuple[int, int]:
    """(ms) where the 1-minute rollups and where the raw samples start being read."""
    now = round(time.time() * 1000)
    return now - settings.RETENTION_1M_DAYS * _DAY_MS, now - settings.RETENTION_RAW_DAYS * _DAY_MS


def samples_read(*, matchers: list[Matcher], start_ms: int, end_ms: int) -> list[StoredSeries]:
    """The matching series with their samples in [start_ms, end_ms] (series without any are left out)."""
    matched = series_match(matchers=matchers)
    if not matched:
        return []
    minute_from, raw_from = _retention_starts()
    if len(matched) > settings.PROMQL_MAX_SERIES:
        # Series that have nothing in the range (an instance label that changed, a pod long gone) cost
        # nothing to read, so only those with data count against the limit.
        with_data = _with_data_in_range(
            [series_id for series_id, _ in matched], start_ms, end_ms, minute_from=minute_from, raw_from=raw_from
        )
        matched = [(series_id, labels) for series_id, labels in matched if series_id in with_data]
    if len(matched) > settings.PROMQL_MAX_SERIES:
        raise PromQLError(
            f"the selector matches {len(matched)} series with samples in the range, more than the "
            f"{settings.PROMQL_MAX_SERIES} a query may load (PERFPILOT_PROMQL_MAX_SERIES): narrow its label matchers",
            error_type="execution",
        )
    if not matched:
        return []
    labels_by_id = dict(matched)
    params = {"ids": list(labels_by_id), "start": start_ms, "end": end_ms, "minute_from": minute_from}
    params["raw_from"] = raw_from
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT set_config('statement_timeout', %s, true)", [f"{settings.PROMQL_TIMEOUT_SECONDS}s"])
            # Results in binary (which Django's client-side cursors do not offer): the strings come as
            # they are, not hex-encoded and decoded again.
            with psycopg.Cursor(cursor.connection) as binary:
                binary.execute(_SAMPLES_BY_SERIES_SQL.format(samples=_SAMPLES_SQL), params, binary=True)
                rows = binary.fetchall()
    except (OperationalError, QueryCanceled) as exc:
        if not isinstance(exc, QueryCanceled) and not isinstance(exc.__cause__, QueryCanceled):
            raise
        raise PromQLError(
            f"query timed out reading samples (PERFPILOT_PROMQL_TIMEOUT={settings.PROMQL_TIMEOUT_SECONDS} s)",
            error_type="timeout",
        ) from exc
    by_labels: dict[tuple, StoredSeries] = {}
    for series_id, raw_stamps, raw_values in sorted(rows):
        labels = labels_by_id[series_id]
        stamps, values = _in_order(raw_stamps, raw_values, start_ms, end_ms)
        if not len(stamps):
            continue
        key = tuple(sorted(labels.items()))
        if key in by_labels:  # the same label set under two targets' namespaces: merged, as one series
            merged = by_labels[key]
            order = np.argsort(np.concatenate((merged.stamps, stamps)), kind="stable")
            merged.stamps = np.concatenate((merged.stamps, stamps))[order]
            merged.values = np.concatenate((merged.values, values))[order]
            continue
        by_labels[key] = StoredSeries(labels=labels, stamps=stamps, values=values)
    # In the order of their label sets, as Prometheus's storage gives them for a range over more than one
    # block: ties in topk/bottomk go the same way, and sums add in the same order.
    return [by_labels[key] for key in sorted(by_labels)]


def _in_order(raw_stamps: bytes, raw_values: bytes, start_ms: int, end_ms: int) -> tuple[np.ndarray, np.ndarray]:
    """A series' (stamps ms, values) in [start_ms, end_ms], by time, from its binary strings."""
    micros = np.frombuffer(raw_stamps, dtype=">i8").astype(np.int64)
    # Unix milliseconds rounded half up, as (extract(epoch FROM ts) * 1000)::bigint rounds them after 1970.
    stamps = (micros + 500) // 1000 + _PG_EPOCH_MS
    values = np.frombuffer(raw_values, dtype=">f8").astype(np.float64)
    kept = (stamps >= start_ms) & (stamps <= end_ms)
    if not kept.all():
        stamps, values = stamps[kept], values[kept]
    if np.any(stamps[1:] < stamps[:-1]):
        order = np.argsort(stamps, kind="stable")
        stamps, values = stamps[order], values[order]
    return stamps, values


_WITH_DATA_SQL = """
    SELECT s.id FROM unnest(%(ids)s::bigint[]) AS s (id)
    WHERE EXISTS (
            SELECT 1 FROM monitoring_sample WHERE series_id = s.id
            AND ts >= to_timestamp(greatest(%(start)s, %(raw_from)s)::float8 / 1000)
            AND ts <= to_timestamp(%(end)s::float8 / 1000))
       OR EXISTS (
            SELECT 1 FROM monitoring_rollup_1m WHERE series_id = s.id
            AND bucket >= to_timestamp(greatest(%(start)s - 60000, %(minute_from)s)::float8 / 1000)
            AND bucket < to_timestamp(least(%(end)s, %(raw_from)s)::float8 / 1000))
       OR EXISTS (
            SELECT 1 FROM monitoring_rollup_1h WHERE series_id = s.id
            AND bucket >= to_timestamp((%(start)s - 3600000)::float8 / 1000)
            AND bucket < to_timestamp(least(%(end)s, %(minute_from)s)::float8 / 1000))
"""


def _with_data_in_range(
    series_ids: list[int], start_ms: int, end_ms: int, *, minute_from: int, raw_from: int
) -> set[int]:
    """Which of the series have a sample or a rollup bucket that a read of [start_ms, end_ms] would load:
    three index probes a series (raw samples, 1-minute and 1-hour rollups, each where it is read)."""
    params = {"ids": series_ids, "start": start_ms, "end": end_ms, "minute_from": minute_from, "raw_from": raw_from}
    with connection.cursor() as cursor:
        cursor.execute(_WITH_DATA_SQL, params)
        return {row[0] for row in cursor.fetchall()}


def _with_samples_between(series_ids: list[int], start_ms: int | None, end_ms: int | None) -> set[int]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT DISTINCT series_id FROM monitoring_sample WHERE series_id = ANY(%s) "
            "AND ts >= to_timestamp(%s::float8 / 1000) AND ts <= to_timestamp(%s::float8 / 1000)",
            [series_ids, start_ms if start_ms is not None else -(2**52), end_ms if end_ms is not None else 2**52],
        )
        return {row[0] for row in cursor.fetchall()}


def series_find(
    *, selectors: list[list[Matcher]] | None, start_ms: int | None = None, end_ms: int | None = None
) -> list[dict[str, str]]:
    """The label sets of the series any selector matches (all series without selectors), sorted.

    With a start or an end, only series with a sample between them.
    """
    found: dict[int, dict[str, str]] = {}
    for matchers in selectors if selectors is not None else [[]]:
        found.update(series_match(matchers=matchers))
    if found and (start_ms is not None or end_ms is not None):
        kept = _with_samples_between(list(found), start_ms, end_ms)
        found = {sid: labels for sid, labels in found.items() if sid in kept}
    unique = {tuple(sorted(labels.items())): labels for labels in found.values()}
    return [unique[key] for key in sorted(unique)]


def metric_kinds() -> dict[str, set[str]]:
    """Every metric name with the kinds its series are stored as."""
    kinds: dict[str, set[str]] = {}
    for metric, kind in Series.objects.values_list("metric", "kind").distinct():
        kinds.setdefault(metric, set()).add(kind)
    return kinds
