"""Reading series: chart data at a resolution that fits the range, latest values, and search.

series_query() keeps the number of points per series at or under max_points whatever the range,
by reading the coarsest stored resolution that is still finer than the chart step and letting
PostgreSQL aggregate to that step (date_bin) before anything crosses the wire.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, NamedTuple

from django.conf import settings
from django.db import connection
from django.db.models import Q, QuerySet
from django.utils import timezone

from core.errors import InvalidInput
from monitoring.models import RollupWatermark, Series
from monitoring.services.rollups import floor_time

Resolution = Literal["raw", "1m", "1h"]
_RESOLUTION_SECONDS: dict[str, int] = {"raw": 1, "1m": 60, "1h": 3600}

# Steps are aligned to the Unix epoch, like the rollup buckets (monitoring.services.rollups).
# Step starts come back as Unix seconds: a float crosses the wire and becomes a datetime in C,
# where a timestamptz is parsed from text in Python (a third of a chart's time on the Overview).
_RAW_SQL = """
    SELECT series_id, extract(epoch FROM date_bin(%(step)s, ts, TIMESTAMPTZ '1970-01-01 00:00:00+00'))::float8 AS t,
           avg(value), min(value), max(value)
    FROM monitoring_sample
    WHERE series_id = ANY(%(ids)s) AND ts >= %(start)s AND ts < %(end)s
    GROUP BY 1, 2 ORDER BY 1, 2
"""
# Rollup buckets below the watermark, raw samples from it on (the newest minutes are not rolled
# up yet); the average is sum / count over both, so it is weighted by the samples in each bucket.
_ROLLUP_SQL_TEMPLATE = """
    SELECT series_id, extract(epoch FROM date_bin(%(step)s, t, TIMESTAMPTZ '1970-01-01 00:00:00+00'))::float8 AS b,
           sum(s) / sum(c), min(lo), max(hi)
    FROM (
        SELECT series_id, bucket AS t, min AS lo, max AS hi, sum AS s, count AS c
        FROM monitoring_rollup_RES
        WHERE series_id = ANY(%(ids)s) AND bucket >= %(bucket_start)s AND bucket < %(rollup_end)s
        UNION ALL
        SELECT series_id, ts, value, value, value, 1
        FROM monitoring_sample
        WHERE series_id = ANY(%(ids)s) AND ts >= %(raw_start)s AND ts < %(end)s
    ) AS d
    GROUP BY 1, 2 ORDER BY 1, 2
"""
_ROLLUP_SQL = {resolution: _ROLLUP_SQL_TEMPLATE.replace("RES", resolution) for resolution in ("1m", "1h")}


class Point(NamedTuple):
    """One step of a series. A named tuple: charts build thousands per request, and a tuple is
    several times cheaper to create than a frozen dataclass."""

    ts: datetime  # start of the step
    avg: float
    min: float
    max: float


@dataclass(frozen=True)
class SeriesQueryResult:
    resolution: Resolution
    step_seconds: int
    series: dict[int, list[Point]]


def _choose(start: datetime, end: datetime, max_points: int, now: datetime) -> tuple[Resolution, int]:
    """The resolution to read and the step (whole seconds, a multiple of that resolution)."""
    range_us = (end - start) // timedelta(microseconds=1)
    step = _ceil_div(range_us, max_points * 1_000_000)  # ceil(range / max_points), whole seconds
    if step < 60 and start >= now - timedelta(days=settings.RETENTION_RAW_DAYS):
        resolution: Resolution = "raw"
    elif step < 3600 and start >= now - timedelta(days=settings.RETENTION_1M_DAYS):
        resolution = "1m"
    else:
        resolution = "1h"
    unit = _RESOLUTION_SECONDS[resolution]
    step = _ceil_div(step, unit) * unit
    if max_points > 1 and _steps_touched(start, end, step) > max_points:
        # Steps are aligned to the epoch (so a chart's points do not shift as it refreshes), so
        # [start, end) can touch one step more than range / step. range / (max_points - 1) always
        # fits: the range then spans at most max_points - 1 steps, plus the one cut by `start`.
        step = _ceil_div(_ceil_div(range_us, (max_points - 1) * 1_000_000), unit) * unit
    return resolution, step


def _ceil_div(numerator: int, denominator: int) -> int:
    return max(1, -(-numerator // denominator))


def _steps_touched(start: datetime, end: datetime, step: int) -> int:
    first = floor_time(start, timedelta(seconds=step))
    return math.ceil((end - first) / timedelta(seconds=step))


def series_query(
    *,
    series_ids: list[int],
    start: datetime,
    end: datetime,
    max_points: int = 1500,
    now: datetime | None = None,
) -> SeriesQueryResult:
    """Points of each series in [start, end), at most max_points each (at most two when max_points
    is 1: a range can straddle a step boundary), in one query.

    Rollup resolutions are completed with raw samples newer than the rollup watermark, so the
    newest minutes show up on every resolution. Every requested id is in the result (possibly empty).
    """
    if end <= start:
        raise InvalidInput("The end of the range must be after its start.", field="end")
    if max_points < 1:
        raise InvalidInput("max_points must be at least 1.", field="max_points")
    resolution, step = _choose(start, end, max_points, now or timezone.now())
    result: dict[int, list[Point]] = {series_id: [] for series_id in series_ids}
    if not series_ids:
        return SeriesQueryResult(resolution=resolution, step_seconds=step, series=result)
    params: dict = {"ids": list(series_ids), "start": start, "end": end, "step": timedelta(seconds=step)}
    if resolution == "raw":
        sql = _RAW_SQL
    else:
        sql = _ROLLUP_SQL[resolution]
        watermark = RollupWatermark.objects.filter(resolution=resolution).values_list("done_until", flat=True).first()
        # The bucket holding `start` is included whole: rollups cannot be split below their resolution.
        params["bucket_start"] = floor_time(start, timedelta(seconds=_RESOLUTION_SECONDS[resolution]))
        if watermark is None:  # never rolled up (a fresh install's first minute): raw only
            params["rollup_end"], params["raw_start"] = params["bucket_start"], start
        else:
            params["rollup_end"], params["raw_start"] = min(end, watermark), max(start, watermark)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        for series_id, seconds, avg, low, high in cursor.fetchall():
            result[series_id].append(Point(datetime.fromtimestamp(seconds, UTC), avg, low, high))
    return SeriesQueryResult(resolution=resolution, step_seconds=step, series=result)


def series_latest(
    *, series_ids: list[int], within: timedelta = timedelta(minutes=10), now: datetime | None = None
) -> dict[int, tuple[datetime, float]]:
    """The newest raw sample of each series, if it is not older than `within`; absent series are left out."""
    if not series_ids:
        return {}
    since = (now or timezone.now()) - within
    # One index probe per id (backwards on (series_id, ts), LIMIT 1), in the partitions since `since`.
    sql = (
        "SELECT s.id, l.ts, l.value FROM unnest(%s::bigint[]) AS s(id) "
        "CROSS JOIN LATERAL (SELECT ts, value FROM monitoring_sample "
        "WHERE series_id = s.id AND ts >= %s ORDER BY ts DESC LIMIT 1) AS l"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [list(series_ids), since])
        return {series_id: (ts, value) for series_id, ts, value in cursor.fetchall()}


def series_search(*, target_id: int | None = None, text: str | None = None, limit: int = 100) -> QuerySet[Series]:
    """Series of a target and/or whose metric or labels contain text, ordered by target name and metric."""
    queryset = Series.objects.select_related("target")
    if target_id is not None:
        queryset = queryset.filter(target_id=target_id)
    if text:
        queryset = queryset.filter(Q(metric__icontains=text) | Q(labels_key__icontains=text))
    return queryset.order_by("target__name", "metric", "labels_key")[:limit]


def series_get(*, series_id: int) -> Series | None:
    """One series with its target, or None (other apps validate series ids with this)."""
    return Series.objects.select_related("target").filter(pk=series_id).first()


def series_units(*, series_ids: Iterable[int]) -> dict[int, tuple[str, str]]:
    """(metric, stored unit) of each of many series, in one query (a scaling tick reads thousands)."""
    rows = Series.objects.filter(pk__in=set(series_ids)).values_list("id", "metric", "unit")
    return {series_id: (metric, unit) for series_id, metric, unit in rows}


def series_matching(*, metric: str, target_id: int | None = None, labels: dict | None = None) -> list[Series]:
    """Series of one metric (of one target, or all), whose labels include every given label value."""
    queryset = Series.objects.select_related("target").filter(metric=metric)
    if target_id is not None:
        queryset = queryset.filter(target_id=target_id)
    if labels:
        queryset = queryset.filter(labels__contains=labels)
    return list(queryset.order_by("target__name", "labels_key"))
