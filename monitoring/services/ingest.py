"""Push ingestion: batches of samples from external agents, validated, then one COPY."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import chain

import numpy as np
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from core.errors import InvalidInput, UnprocessableInput
from monitoring.models import Series, SeriesTotal, Target
from monitoring.storage import SeriesSpec, labels_key, samples_write_columns, series_resolve

MAX_FUTURE = timedelta(minutes=5)
MAX_SAMPLES_PER_REQUEST = 500_000


@dataclass(frozen=True)
class IngestBatch:
    metric: str
    labels: dict[str, str]
    kind: str
    unit: str
    points: list[tuple[float, float]]  # (unix seconds, value)


@dataclass(frozen=True)
class IngestResult:
    samples: int
    series: int


def samples_ingest(*, target: Target | None, batches: list[IngestBatch], now: datetime | None = None) -> IngestResult:
    """Validate every point first (nothing is written when one is bad), then write all in one COPY."""
    now = now or timezone.now()
    oldest_allowed = (now - timedelta(days=settings.RETENTION_RAW_DAYS)).timestamp()
    newest_allowed = (now + MAX_FUTURE).timestamp()
    total = sum(len(batch.points) for batch in batches)
    if total > MAX_SAMPLES_PER_REQUEST:
        raise InvalidInput(f"At most {MAX_SAMPLES_PER_REQUEST} samples per request; got {total}.", field="series")
    if total == 0:
        return IngestResult(samples=0, series=0)
    for index, batch in enumerate(batches):
        if batch.kind not in Series.Kind.values:
            raise InvalidInput(f"series[{index}].kind must be one of {', '.join(Series.Kind.values)}.", field="kind")
    # All points of all batches as one (n, 2) array, checked in C; only a bad request is walked
    # point by point, to name the culprit.
    flat = chain.from_iterable(chain.from_iterable(batch.points for batch in batches))
    points = np.fromiter(flat, dtype=np.float64, count=2 * total).reshape(-1, 2)
    stamps, values = points[:, 0], points[:, 1]
    if not (np.isfinite(points).all() and oldest_allowed <= stamps.min() and stamps.max() <= newest_allowed):
        for index, batch in enumerate(batches):
            _reject_first_bad_point(index, batch, oldest_allowed, newest_allowed)
    specs = [SeriesSpec(b.metric, b.labels, b.kind, b.unit) for b in batches]
    return _write(
        target=target, specs=specs, counts=[len(batch.points) for batch in batches], stamps=stamps, values=values
    )


def samples_ingest_columns(
    *,
    target: Target | None,
    specs: list[SeriesSpec],
    counts: list[int],
    stamps: np.ndarray,
    values: np.ndarray,
    deltas: list[bool] | None = None,
    labels_keys: list[str] | None = None,
    now: datetime | None = None,
) -> IngestResult:
    """The same validation and write as samples_ingest, for decoders that already hold columns.

    specs[i] owns the next counts[i] samples of stamps (Unix seconds) and values. When deltas[i] is
    true those values are increments (OTLP delta temporality): they are added to the series'
    running total (SeriesTotal, one locked upsert) and stored as the cumulative total. A bad
    request names the series and sample: `{metric}{labels} sample {n}`. labels_keys, when the
    decoder computed them, are the specs' labels_key() in order.
    """
    now = now or timezone.now()
    oldest_allowed = (now - timedelta(days=settings.RETENTION_RAW_DAYS)).timestamp()
    newest_allowed = (now + MAX_FUTURE).timestamp()
    total = len(stamps)
    if total > MAX_SAMPLES_PER_REQUEST:
        raise InvalidInput(f"At most {MAX_SAMPLES_PER_REQUEST} samples per request; got {total}.", field="series")
    if total == 0:
        return IngestResult(samples=0, series=0)
    good_stamps = (stamps >= oldest_allowed) & (stamps <= newest_allowed)
    if not (good_stamps.all() and np.isfinite(values).all()):
        first = int(np.flatnonzero(~(good_stamps & np.isfinite(values)))[0])
        starts = np.cumsum([0, *counts])
        index = int(np.searchsorted(starts, first, side="right")) - 1
        spec = specs[index]
        where = f"{spec.metric}{{{labels_key(spec.labels)}}} sample {first - int(starts[index])}"
        if not good_stamps[first]:
            raise InvalidInput(
                f"{where}: timestamp {float(stamps[first])!r} is outside the accepted range (the last "
                f"{settings.RETENTION_RAW_DAYS} days up to 5 minutes ahead).",
                field="timestamp",
            )
        raise InvalidInput(f"{where}: value must be a finite number.", field="value")
    return _write(
        target=target, specs=specs, counts=counts, stamps=stamps, values=values, deltas=deltas, labels_keys=labels_keys
    )


def _write(
    *,
    target: Target | None,
    specs: list[SeriesSpec],
    counts: list[int],
    stamps: np.ndarray,
    values: np.ndarray,
    deltas: list[bool] | None = None,
    labels_keys: list[str] | None = None,
) -> IngestResult:
    ids = series_resolve(target_id=target.id if target else None, specs=specs, labels_keys=labels_keys)
    series_ids = np.repeat(np.asarray(ids, dtype=np.int64), counts)
    if deltas and any(deltas):
        # Add to the running totals and write their continuation in one transaction: the totals'
        # row locks hold until the samples are written, and a failed write takes the addition back.
        with transaction.atomic():
            values = _accumulate(ids=ids, counts=counts, deltas=deltas, values=values)
            samples_write_columns(series_ids=series_ids, stamps=stamps, values=values)
    else:
        samples_write_columns(series_ids=series_ids, stamps=stamps, values=values)
    return IngestResult(samples=len(stamps), series=len(set(ids)))


def _accumulate(*, ids: list[int], counts: list[int], deltas: list[bool], values: np.ndarray) -> np.ndarray:
    """Turn the delta series' increments into the continuation of their running totals.

    One upsert adds each series' increments to its SeriesTotal and returns the new totals; its row
    locks (taken in series id order, so two requests never wait on each other in a cycle) hold
    until the samples are written, so concurrent requests to one series add up in turn.
    """
    sums: dict[int, float] = {}
    start = 0
    for sid, count, delta in zip(ids, counts, deltas, strict=True):
        if delta:
            sums[sid] = sums.get(sid, 0.0) + float(values[start : start + count].sum())
        start += count
    order = sorted(sums)
    table = connection.ops.quote_name(SeriesTotal._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (series_id, total) "  # noqa: S608 - our table
            "SELECT * FROM unnest(%s::bigint[], %s::float8[]) ORDER BY 1 "
            f"ON CONFLICT (series_id) DO UPDATE SET total = {table}.total + EXCLUDED.total "
            "RETURNING series_id, total",
            [order, [sums[sid] for sid in order]],
        )
        running = {sid: total - sums[sid] for sid, total in cursor.fetchall()}  # the totals before this request
    values = values.astype(np.float64, copy=True)
    start = 0
    for sid, count, delta in zip(ids, counts, deltas, strict=True):
        if delta and count:
            segment = running[sid] + np.cumsum(values[start : start + count])
            values[start : start + count] = segment
            running[sid] = float(segment[-1])
        start += count
    return values


def _reject_first_bad_point(index: int, batch: IngestBatch, oldest_allowed: float, newest_allowed: float) -> None:
    for point_index, (ts, value) in enumerate(batch.points):
        where = f"series[{index}].points[{point_index}]"
        loc = ["body", "payload", "series", index, "points", point_index]
        if not math.isfinite(ts) or not oldest_allowed <= ts <= newest_allowed:
            # 400, not 422: the timestamp is a number as the schema says; the accepted range
            # moves with the clock and retention, so the service refuses it, naming the point.
            raise InvalidInput(
                f"{where}: timestamp {ts!r} is outside the accepted range (the last "
                f"{settings.RETENTION_RAW_DAYS} days up to 5 minutes ahead, in Unix seconds).",
                field="points",
                loc=[*loc, 0],
            )
        if not math.isfinite(value):
            raise UnprocessableInput(f"{where}: value must be a finite number.", field="points", loc=[*loc, 1])
