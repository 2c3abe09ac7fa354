"""Series selectors against real PostgreSQL: resolution choice, point budget, values, latest, search."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from core.errors import InvalidInput
from monitoring import storage
from monitoring.models import Target
from monitoring.selectors.series import series_latest, series_query, series_search
from monitoring.services.rollups import floor_time, rollups_run

MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def needs_samples(test):
    """Partitions are DDL outside the ORM: a real transaction, and clean tables before and after."""
    return pytest.mark.django_db(transaction=True)(pytest.mark.usefixtures("clean_samples")(test))


@pytest.fixture(autouse=True)
def _retention(settings):
    settings.RETENTION_RAW_DAYS = 7
    settings.RETENTION_1M_DAYS = 90
    settings.RETENTION_1H_DAYS = 730


def _series(*metrics: str, target_id: int | None = None, labels: dict | None = None) -> list[int]:
    specs = [storage.SeriesSpec(metric=metric, labels=labels or {}) for metric in metrics]
    return storage.series_resolve(target_id=target_id, specs=specs)


def _write_history(series_ids: list[int], start: datetime, end: datetime, seed: int = 3) -> list[tuple]:
    """Samples 5 to 25 seconds apart (so buckets hold different counts), random values."""
    rng = random.Random(seed)
    rows = []
    for series_id in series_ids:
        ts = start + timedelta(seconds=rng.randint(0, 5))
        while ts < end:
            rows.append((series_id, ts, rng.uniform(0, 100)))
            ts += timedelta(seconds=rng.randint(5, 25))
    storage.samples_write(rows)
    return rows


def _expected_points(rows, series_id: int, start: datetime, end: datetime, step: int, unit: timedelta) -> dict:
    """avg/min/max per step computed in Python; with rollups, whole `unit` buckets from the one holding start."""
    first = floor_time(start, unit)
    groups: dict[datetime, list[float]] = defaultdict(list)
    for sid, ts, value in rows:
        if sid == series_id and first <= ts < end:
            groups[floor_time(ts, timedelta(seconds=step))].append(value)
    return {ts: (sum(v) / len(v), min(v), max(v)) for ts, v in groups.items()}


@pytest.mark.django_db
@pytest.mark.parametrize(
    "ago,length,resolution,step",
    [
        (HOUR, HOUR, "raw", 3),  # 3600 s / 1500 = 2.4 -> 3 s
        (6 * HOUR, 6 * HOUR, "raw", 15),  # 14.4 -> 15 s
        (7 * DAY, 7 * DAY, "1m", 420),  # 403.2 -> 404 s, rounded up to whole minutes
        (30 * DAY, 30 * DAY, "1m", 1740),  # 1728 -> 1740 s
        (8 * DAY, HOUR, "1m", 60),  # an hour, but older than raw retention
        (100 * DAY, DAY, "1h", 3600),  # a day, but older than 1m retention
        (365 * DAY, 365 * DAY, "1h", 21600),  # 21024 -> 6 h
    ],
)
def test_the_resolution_follows_the_range_and_the_retention(ago, length, resolution, step):
    now = timezone.now()
    (series_id,) = _series("cpu")

    result = series_query(series_ids=[series_id], start=now - ago, end=now - ago + length, now=now)

    assert (result.resolution, result.step_seconds) == (resolution, step)
    assert result.series == {series_id: []}


@pytest.mark.django_db
def test_an_empty_or_reversed_range_is_rejected():
    now = timezone.now()
    with pytest.raises(InvalidInput):
        series_query(series_ids=[1], start=now, end=now)


@needs_samples
def test_points_never_exceed_max_points():
    now = timezone.now()
    ids = _series("cpu", "memory")
    _write_history(ids, now - 2 * DAY - HOUR, now)
    rollups_run(now=now)

    for span in (timedelta(minutes=17), 5 * HOUR, 2 * DAY + timedelta(seconds=13)):
        start = now - span - timedelta(seconds=7)  # deliberately not aligned to anything
        for max_points in (2, 7, 100, 333, 1500):
            result = series_query(series_ids=ids, start=start, end=now, max_points=max_points, now=now)
            for series_id in ids:
                assert 0 < len(result.series[series_id]) <= max_points, (span, max_points, result.resolution)


@needs_samples
def test_raw_points_match_the_samples():
    now = timezone.now()
    (series_id,) = _series("cpu")
    rows = _write_history([series_id], now - 2 * HOUR, now)
    start, end = now - HOUR, now - timedelta(minutes=2)

    result = series_query(series_ids=[series_id], start=start, end=end, now=now)

    assert result.resolution == "raw"
    # Raw samples are read from `start` exactly (no widening to a bucket).
    expected = _expected_points(rows, series_id, start, end, result.step_seconds, timedelta(microseconds=1))
    _assert_points(result.series[series_id], expected)


@needs_samples
def test_rollup_points_are_count_weighted_and_include_the_newest_raw_samples():
    now = timezone.now()
    ids = _series("cpu", "memory")
    rows = _write_history(ids, now - 3 * DAY, now)
    # Rolled up to a few minutes ago: the newest points must come from raw samples.
    done_until = rollups_run(now=now - 5 * MINUTE).done_until
    assert max(ts for _, ts, _ in rows) > done_until + 4 * MINUTE
    start = now - 3 * DAY + timedelta(seconds=42)

    result = series_query(series_ids=ids, start=start, end=now, now=now)

    assert result.resolution == "1m"
    for series_id in ids:
        expected = _expected_points(rows, series_id, start, now, result.step_seconds, MINUTE)
        _assert_points(result.series[series_id], expected)


@needs_samples
def test_hourly_points_beyond_1m_retention_come_from_hourly_rollups(settings):
    settings.RETENTION_1M_DAYS = 1
    now = timezone.now()
    (series_id,) = _series("cpu")
    rows = _write_history([series_id], now - 3 * DAY, now - DAY)
    rollups_run(now=now)
    start, end = now - 3 * DAY, now - DAY - timedelta(minutes=5)

    result = series_query(series_ids=[series_id], start=start, end=end, now=now, max_points=200)

    assert result.resolution == "1h"
    # Whole hours: the rollup holding `end` is read whole, so compare against whole hours too.
    end_hour = floor_time(end, HOUR) + HOUR
    expected = _expected_points(rows, series_id, start, end_hour, result.step_seconds, HOUR)
    _assert_points(result.series[series_id], expected)


def _assert_points(points, expected: dict) -> None:
    assert [p.ts for p in points] == sorted(expected)
    for point in points:
        avg, low, high = expected[point.ts]
        assert point.avg == pytest.approx(avg, rel=1e-9)
        assert (point.min, point.max) == (pytest.approx(low), pytest.approx(high))


@needs_samples
def test_series_latest_returns_the_newest_recent_value_of_each_series():
    now = timezone.now()
    fresh, stale, silent = _series("fresh", "stale", "silent")
    storage.samples_write(
        [
            (fresh, now - 3 * MINUTE, 1.0),
            (fresh, now - 30 * MINUTE, 9.0),
            (fresh, now - timedelta(seconds=20), 2.5),
            (stale, now - 30 * MINUTE, 4.0),
        ]
    )

    latest = series_latest(series_ids=[fresh, stale, silent])

    assert latest == {fresh: (now - timedelta(seconds=20), 2.5)}
    assert series_latest(series_ids=[stale], within=HOUR) == {stale: (now - 30 * MINUTE, 4.0)}
    assert series_latest(series_ids=[]) == {}


@pytest.mark.django_db
def test_series_search_by_target_and_text_is_ordered_by_target_then_metric():
    alpha = Target.objects.create(name="alpha", kind="host")
    beta = Target.objects.create(name="beta", kind="postgres")
    _series("pg_connections", "pg_locks", target_id=beta.id, labels={"db": "shop"})
    _series("cpu_percent", "memory_bytes", target_id=alpha.id)
    _series("disk_bytes", target_id=alpha.id, labels={"device": "sda"})

    everything = [(s.target.name, s.metric) for s in series_search()]
    of_alpha = [s.metric for s in series_search(target_id=alpha.id)]
    bytes_ = [s.metric for s in series_search(text="BYTES")]
    by_label = [s.metric for s in series_search(text="db=shop")]
    limited = list(series_search(limit=2))

    assert everything == [
        ("alpha", "cpu_percent"),
        ("alpha", "disk_bytes"),
        ("alpha", "memory_bytes"),
        ("beta", "pg_connections"),
        ("beta", "pg_locks"),
    ]
    assert of_alpha == ["cpu_percent", "disk_bytes", "memory_bytes"]
    assert bytes_ == ["disk_bytes", "memory_bytes"]
    assert by_label == ["pg_connections", "pg_locks"]
    assert [s.metric for s in series_search(target_id=beta.id, text="locks")] == ["pg_locks"]
    assert len(limited) == 2
