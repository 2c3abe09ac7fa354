"""Rollups against real PostgreSQL: buckets match what Python computes from the raw samples written."""

from __future__ import annotations

import random
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from django.db import connection
from django.utils import timezone

from monitoring import storage
from monitoring.models import RollupDirtyRange, RollupWatermark
from monitoring.services import rollups
from monitoring.services.rollups import floor_time, rollups_run

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("clean_samples")]

T0 = datetime(2026, 3, 10, 0, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)


def _series(*metrics: str) -> list[int]:
    specs = [storage.SeriesSpec(metric=metric, labels={"test": "rollups"}) for metric in metrics]
    return storage.series_resolve(target_id=None, specs=specs)


def _irregular_samples(series_ids: list[int], start: datetime, hours: int, seed: int = 7) -> list[tuple]:
    """Samples 3 to 17 seconds apart with random values, so buckets have different counts."""
    rng = random.Random(seed)
    rows = []
    for series_id in series_ids:
        ts = start + timedelta(seconds=rng.randint(0, 9))
        while ts < start + timedelta(hours=hours):
            rows.append((series_id, ts, round(rng.uniform(-50, 250), 3)))
            ts += timedelta(seconds=rng.randint(3, 17))
    return rows


def _expected(rows: list[tuple], step: timedelta) -> dict[tuple[int, datetime], tuple[float, float, float, int]]:
    groups: dict[tuple[int, datetime], list[float]] = defaultdict(list)
    for series_id, ts, value in rows:
        groups[(series_id, floor_time(ts, step))].append(value)
    return {key: (min(values), max(values), sum(values), len(values)) for key, values in groups.items()}


def _stored(table: str) -> dict[tuple[int, datetime], tuple[float, float, float, int]]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT series_id, bucket, min, max, sum, count FROM {table}")
        return {(sid, bucket): (low, high, total, count) for sid, bucket, low, high, total, count in cursor.fetchall()}


def _assert_matches(stored: dict, expected: dict) -> None:
    assert stored.keys() == expected.keys()
    for key, (low, high, total, count) in expected.items():
        s_low, s_high, s_total, s_count = stored[key]
        assert (s_low, s_high, s_count) == (low, high, count), key
        assert s_total == pytest.approx(total, rel=1e-9, abs=1e-6), key
        assert s_total / s_count == pytest.approx(total / count, rel=1e-9, abs=1e-9), key


def _watermark(resolution: str) -> datetime | None:
    return RollupWatermark.objects.filter(resolution=resolution).values_list("done_until", flat=True).first()


def test_minute_and_hour_buckets_match_the_raw_samples():
    ids = _series("cpu", "memory")
    rows = _irregular_samples(ids, T0, hours=3)
    storage.samples_write(rows)

    report = rollups_run(now=T0 + 3 * HOUR + 2 * MINUTE + timedelta(seconds=30))

    assert not report.skipped
    _assert_matches(_stored("monitoring_rollup_1m"), _expected(rows, MINUTE))
    _assert_matches(_stored("monitoring_rollup_1h"), _expected(rows, HOUR))
    assert report.minute_buckets == len(_expected(rows, MINUTE))
    # The last whole minute before `now` is left for the next run; both resolutions stop there.
    assert _watermark("1m") == _watermark("1h") == T0 + 3 * HOUR + MINUTE == report.done_until


def test_hour_buckets_are_min_of_min_max_of_max_and_sum_of_count():
    (series_id,) = _series("queue")
    rows = [(series_id, T0 + timedelta(minutes=m, seconds=s), float(m * 100 + s)) for m in range(60) for s in (0, 30)]
    rows.append((series_id, T0 + timedelta(minutes=59, seconds=45), -5.0))
    storage.samples_write(rows)

    rollups_run(now=T0 + 2 * HOUR)

    low, high, total, count = _stored("monitoring_rollup_1h")[(series_id, T0)]
    assert (low, high, count) == (-5.0, 5930.0, 121)
    assert total == pytest.approx(sum(value for _, _, value in rows))


def test_rerunning_changes_nothing():
    ids = _series("cpu", "memory")
    rows = _irregular_samples(ids, T0, hours=2)
    storage.samples_write(rows)
    now = T0 + 2 * HOUR + 5 * MINUTE
    rollups_run(now=now)
    before_1m, before_1h = _stored("monitoring_rollup_1m"), _stored("monitoring_rollup_1h")

    again = rollups_run(now=now)
    later = rollups_run(now=now + 10 * MINUTE)

    assert (again.minute_buckets, again.hour_buckets) == (0, 0)
    assert (later.minute_buckets, later.hour_buckets) == (0, 0)
    assert _stored("monitoring_rollup_1m") == before_1m
    assert _stored("monitoring_rollup_1h") == before_1h


def test_incremental_runs_add_up_to_one_run_over_everything():
    ids = _series("cpu")
    rows = _irregular_samples(ids, T0, hours=3, seed=11)
    storage.samples_write(rows)

    first = rollups_run(now=T0 + HOUR + timedelta(minutes=20, seconds=10))
    second = rollups_run(now=T0 + 3 * HOUR + 2 * MINUTE)

    assert first.range_end == T0 + HOUR + 19 * MINUTE
    # Each run re-reads two minutes before the previous watermark.
    assert second.range_start == first.range_end - 2 * MINUTE
    _assert_matches(_stored("monitoring_rollup_1m"), _expected(rows, MINUTE))
    # The hour that was partial after the first run was recomputed whole by the second.
    _assert_matches(_stored("monitoring_rollup_1h"), _expected(rows, HOUR))


def test_a_late_sample_is_recorded_as_dirty_and_fixes_its_buckets():
    ids = _series("cpu", "memory")
    rows = _irregular_samples(ids, T0, hours=2)
    storage.samples_write(rows)
    rollups_run(now=T0 + 2 * HOUR + 2 * MINUTE)

    late = [(ids[0], T0 + timedelta(minutes=30, seconds=5), 10_000.0), (ids[1], T0 + timedelta(minutes=75), -999.0)]
    storage.samples_write(late)
    assert RollupDirtyRange.objects.count() == 1

    report = rollups_run(now=T0 + 2 * HOUR + 2 * MINUTE)

    assert report.dirty_ranges == 1
    assert RollupDirtyRange.objects.count() == 0
    _assert_matches(_stored("monitoring_rollup_1m"), _expected(rows + late, MINUTE))
    _assert_matches(_stored("monitoring_rollup_1h"), _expected(rows + late, HOUR))
    assert _stored("monitoring_rollup_1h")[(ids[0], T0)][1] == 10_000.0
    # Only the two changed minutes and their two hours were rewritten.
    assert (report.minute_buckets, report.hour_buckets) == (2, 2)


def test_late_samples_into_a_minute_with_no_bucket_yet_create_it():
    (series_id,) = _series("sparse")
    rows = [(series_id, T0 + timedelta(minutes=m), 1.0) for m in range(0, 60, 10)]
    storage.samples_write(rows)
    rollups_run(now=T0 + 2 * HOUR)

    late = [(series_id, T0 + timedelta(minutes=33, seconds=33), 7.0)]
    storage.samples_write(late)
    rollups_run(now=T0 + 2 * HOUR)

    assert _stored("monitoring_rollup_1m")[(series_id, T0 + 33 * MINUTE)] == (7.0, 7.0, 7.0, 1)
    assert _stored("monitoring_rollup_1h")[(series_id, T0)][3] == 7


def test_the_first_run_starts_within_raw_retention(settings):
    settings.RETENTION_RAW_DAYS = 7
    (series_id,) = _series("cpu")
    now = T0 + timedelta(days=10)
    old = [(series_id, T0 + timedelta(minutes=m), 1.0) for m in range(5)]
    recent = [(series_id, now - HOUR + timedelta(minutes=m), 2.0) for m in range(5)]
    storage.samples_write(old + recent)

    rollups_run(now=now)

    assert set(_stored("monitoring_rollup_1m")) == {(series_id, floor_time(ts, MINUTE)) for _, ts, _ in recent}


def test_with_no_samples_the_watermark_still_advances_so_late_samples_are_tracked():
    report = rollups_run(now=T0 + HOUR)

    assert report.minute_buckets == 0 and report.done_until == T0 + 59 * MINUTE
    (series_id,) = _series("cpu")
    storage.samples_write([(series_id, T0 + 10 * MINUTE, 3.0)])
    assert RollupDirtyRange.objects.count() == 1
    rollups_run(now=T0 + HOUR)
    assert _stored("monitoring_rollup_1m") == {(series_id, T0 + 10 * MINUTE): (3.0, 3.0, 3.0, 1)}


def test_a_run_is_skipped_while_another_holds_the_lock():
    (series_id,) = _series("cpu")
    storage.samples_write([(series_id, T0, 1.0)])
    db = connection.settings_dict
    other = psycopg.connect(
        host=db["HOST"], port=db["PORT"], user=db["USER"], password=db["PASSWORD"], dbname=db["NAME"], autocommit=True
    )
    try:
        other.execute("SELECT pg_advisory_lock(%s)", [rollups._LOCK_KEY])
        assert rollups_run(now=T0 + HOUR).skipped
        assert _stored("monitoring_rollup_1m") == {}
    finally:
        other.close()
    # The lock went with the other session; this one did not keep any lock of its own either. The
    # server ends the closed session a moment after the client lets go, and the session's worker
    # may be running its own rollup just then: wait for a free lock, for a few seconds at most.
    deadline = time.monotonic() + 10
    while (report := rollups_run(now=T0 + HOUR)).skipped and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not report.skipped
    assert len(_stored("monitoring_rollup_1m")) == 1


def test_a_late_sample_older_than_raw_retention_does_not_replace_its_complete_bucket(settings):
    from monitoring.services.retention import retention_run

    settings.RETENTION_RAW_DAYS = 7
    (series_id,) = _series("cpu")
    storage.samples_write([(series_id, T0 + timedelta(seconds=s), 1.0) for s in (0, 20, 40)])
    rollups_run(now=T0 + HOUR)
    now = T0 + timedelta(days=9)
    rollups_run(now=now)
    retention_run(now=now)  # drops the day of T0: its samples now live only in the rollups

    # The push of a straggler recreates that day's partition, holding the straggler alone.
    storage.samples_write([(series_id, T0 + timedelta(seconds=50), 5.0)])
    report = rollups_run(now=now)

    assert report.dirty_ranges == 1 and RollupDirtyRange.objects.count() == 0
    assert _stored("monitoring_rollup_1m")[(series_id, T0)] == (1.0, 1.0, 3.0, 3)


def test_the_rollup_task_runs_the_service():
    from monitoring.tasks import rollup_task

    (series_id,) = _series("cpu")
    storage.samples_write([(series_id, timezone.now() - 5 * MINUTE, 1.0)])

    rollup_task()

    assert _watermark("1m") is not None
    assert len(_stored("monitoring_rollup_1m")) == 1
