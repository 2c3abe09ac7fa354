"""Push ingestion: batches of samples from external agents, validated, then one COPY."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import chain

import numpy as np
from django.conf import settings
from django.utils import timezone

from core.errors import InvalidInput, UnprocessableInput
from monitoring.models import Series, Target
from monitoring.storage import SeriesSpec, samples_write_columns, series_resolve

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
    ids = series_resolve(target_id=target.id if target else None, specs=specs)
    series_ids = np.repeat(np.asarray(ids, dtype=np.int64), [len(batch.points) for batch in batches])
    samples_write_columns(series_ids=series_ids, stamps=stamps, values=values)
    return IngestResult(samples=total, series=len(set(ids)))


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
