"""Incremental 1-minute and 1-hour rollups of raw samples.

Each run recomputes whole buckets with INSERT … SELECT … GROUP BY … ON CONFLICT DO UPDATE, so a
rerun over the same range changes nothing and a crash midway loses nothing: the watermark only
moves after the buckets below it are committed. Late samples (older than the watermark) are
recorded by monitoring.storage as RollupDirtyRange rows; their buckets are recomputed here.

1-hour buckets are recomputed from 1-minute buckets for the hours a run touched, in the same
transaction, so both resolutions always cover the same range and the "1h" watermark equals the
"1m" one (the current hour is partial and is recomputed on every run until it is complete).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from monitoring.models import RollupDirtyRange, RollupWatermark
from monitoring.services.retention import sample_partitions_list

MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
# Samples may arrive a little after their timestamp; the newest minute is left for the next run,
# and each run re-reads the last two minutes before the watermark (cheap, and idempotent).
_SETTLE = MINUTE
_OVERLAP = 2 * MINUTE
# One statement per chunk keeps each GROUP BY (and each transaction) bounded on a first run over
# a full raw retention, and lets the watermark advance as the work is done.
_CHUNK = timedelta(hours=6)
_LOCK_KEY = 0x5050_524C  # advisory lock id for rollup runs ("PPRL")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Buckets are aligned to the Unix epoch (date_bin's origin), like floor_time() below. The WHERE on
# the update skips rewriting unchanged buckets: the overlap and dirty-range reruns would otherwise
# rewrite (and bloat) rows that did not change, and rowcount then counts only real changes. Sums
# are compared with a tolerance because adding the same floats in another order (another plan)
# can change the last bits; samples are only ever added, so a real change also changes count.
_ROLLUP_1M_SQL = """
    INSERT INTO monitoring_rollup_1m AS r (series_id, bucket, min, max, sum, count)
    SELECT series_id, date_bin('1 minute', ts, TIMESTAMPTZ '1970-01-01 00:00:00+00'),
           min(value), max(value), sum(value), count(*)
    FROM monitoring_sample
    WHERE ts >= %s AND ts < %s
    GROUP BY 1, 2
    ON CONFLICT (series_id, bucket) DO UPDATE
    SET min = EXCLUDED.min, max = EXCLUDED.max, sum = EXCLUDED.sum, count = EXCLUDED.count
    WHERE r.count <> EXCLUDED.count OR r.min <> EXCLUDED.min OR r.max <> EXCLUDED.max
       OR abs(r.sum - EXCLUDED.sum) > 1e-9 * greatest(abs(EXCLUDED.sum), 1.0)
"""
_ROLLUP_1H_SQL = """
    INSERT INTO monitoring_rollup_1h AS r (series_id, bucket, min, max, sum, count)
    SELECT series_id, date_bin('1 hour', bucket, TIMESTAMPTZ '1970-01-01 00:00:00+00'),
           min(min), max(max), sum(sum), sum(count)::integer
    FROM monitoring_rollup_1m
    WHERE bucket >= %s AND bucket < %s
    GROUP BY 1, 2
    ON CONFLICT (series_id, bucket) DO UPDATE
    SET min = EXCLUDED.min, max = EXCLUDED.max, sum = EXCLUDED.sum, count = EXCLUDED.count
    WHERE r.count <> EXCLUDED.count OR r.min <> EXCLUDED.min OR r.max <> EXCLUDED.max
       OR abs(r.sum - EXCLUDED.sum) > 1e-9 * greatest(abs(EXCLUDED.sum), 1.0)
"""
# Watermarks only move forward, even if a run is given an earlier `now`.
_WATERMARK_SQL = """
    INSERT INTO monitoring_rollupwatermark AS w (resolution, done_until) VALUES (%s, %s)
    ON CONFLICT (resolution) DO UPDATE SET done_until = GREATEST(w.done_until, EXCLUDED.done_until)
"""


@dataclass(frozen=True)
class RollupReport:
    skipped: bool  # another run held the lock
    minute_buckets: int = 0  # 1m rows inserted or changed
    hour_buckets: int = 0  # 1h rows inserted or changed
    dirty_ranges: int = 0  # late-sample ranges recomputed (and deleted)
    range_start: datetime | None = None  # the new-data range rolled up this run, [start, end)
    range_end: datetime | None = None
    done_until: datetime | None = None  # the 1m / 1h watermark after the run
    duration_ms: float = 0.0


def floor_time(value: datetime, step: timedelta) -> datetime:
    """value rounded down to a multiple of step since the Unix epoch (what date_bin does in SQL)."""
    return value - (value - EPOCH) % step


def ceil_time(value: datetime, step: timedelta) -> datetime:
    floored = floor_time(value, step)
    return floored if floored == value else floored + step


def rollups_run(*, now: datetime | None = None) -> RollupReport:
    """Roll up what is new since the last run and what late samples changed; skip if a run is active."""
    started = time.perf_counter()
    now = now or timezone.now()
    with connection.cursor() as cursor:
        # A session lock (not a transaction lock) because the run commits chunk by chunk; it is
        # released in `finally`, or by PostgreSQL if the process dies with its connection.
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [_LOCK_KEY])
        if not cursor.fetchone()[0]:
            return RollupReport(skipped=True)
    try:
        report = _run(now)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [_LOCK_KEY])
    return replace(report, duration_ms=round((time.perf_counter() - started) * 1000, 2))


@dataclass
class _Counts:
    minute_buckets: int = 0
    hour_buckets: int = 0


def _run(now: datetime) -> RollupReport:
    counts = _Counts()
    oldest_raw = _oldest_raw_start()
    watermark = RollupWatermark.objects.filter(resolution="1m").values_list("done_until", flat=True).first()
    end = floor_time(now, MINUTE) - _SETTLE
    if watermark is None:
        # First run: everything still in raw retention.
        start = floor_time(now - timedelta(days=settings.RETENTION_RAW_DAYS), MINUTE)
    else:
        start = watermark - _OVERLAP
    if oldest_raw is not None:
        # No raw data before the oldest partition: skip straight to it (a stale watermark after a
        # long outage would otherwise walk through empty chunks).
        start = max(start, oldest_raw)
    range_start = range_end = None
    if oldest_raw is not None and start < end:
        range_start, range_end = start, end
        for chunk_start, chunk_end in _chunks(start, end):
            with transaction.atomic():
                _recompute(chunk_start, chunk_end, counts)
                _advance_watermarks(chunk_end)
    elif watermark is None or watermark < end:
        # Nothing raw to roll up (yet): everything before `end` is trivially rolled up, and late
        # samples written below it from now on are recorded as dirty ranges.
        with transaction.atomic():
            _advance_watermarks(end)
    done_until = RollupWatermark.objects.filter(resolution="1m").values_list("done_until", flat=True).first()
    # Late samples are only trusted inside retention: an older day's partition may have been
    # dropped and recreated for the late sample alone, and recomputing its minute from that would
    # replace a complete bucket with a partial one (likewise an hour whose minutes were deleted).
    trusted_from = max(
        now - timedelta(days=settings.RETENTION_RAW_DAYS),
        ceil_time(now - timedelta(days=settings.RETENTION_1M_DAYS), HOUR),
    )
    if oldest_raw is not None:
        trusted_from = max(trusted_from, oldest_raw)
    dirty = _recompute_dirty(done_until, trusted_from, counts)
    return RollupReport(
        skipped=False,
        minute_buckets=counts.minute_buckets,
        hour_buckets=counts.hour_buckets,
        dirty_ranges=dirty,
        range_start=range_start,
        range_end=range_end,
        done_until=done_until,
    )


def _oldest_raw_start() -> datetime | None:
    partitions = sample_partitions_list()
    return partitions[0].start if partitions else None


def _chunks(start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """[start, end) cut at multiples of _CHUNK, so chunks line up with hours (and days)."""
    chunks = []
    cursor_at = start
    while cursor_at < end:
        chunk_end = min(floor_time(cursor_at, _CHUNK) + _CHUNK, end)
        chunks.append((cursor_at, chunk_end))
        cursor_at = chunk_end
    return chunks


def _recompute(start: datetime, end: datetime, counts: _Counts) -> None:
    """Recompute the 1m buckets in [start, end) from raw samples, then the 1h buckets of those hours."""
    with connection.cursor() as cursor:
        cursor.execute(_ROLLUP_1M_SQL, [start, end])
        counts.minute_buckets += max(cursor.rowcount, 0)
        cursor.execute(_ROLLUP_1H_SQL, [floor_time(start, HOUR), ceil_time(end, HOUR)])
        counts.hour_buckets += max(cursor.rowcount, 0)


def _advance_watermarks(done_until: datetime) -> None:
    with connection.cursor() as cursor:
        for resolution in ("1m", "1h"):
            cursor.execute(_WATERMARK_SQL, [resolution, done_until])


def _recompute_dirty(done_until: datetime | None, trusted_from: datetime, counts: _Counts) -> int:
    """Recompute the buckets that late samples changed, then delete the ranges that were handled.

    Only the rows read here are deleted: a range recorded while this runs waits for the next run.
    Ranges before trusted_from are deleted without recomputing (see _run).
    """
    rows = list(RollupDirtyRange.objects.order_by("start").values_list("id", "start", "end"))
    if not rows:
        return 0
    trusted_from = ceil_time(trusted_from, MINUTE)
    merged: list[list[datetime]] = []
    for _, start, end in rows:
        start = max(floor_time(start, MINUTE), trusted_from)
        end = floor_time(end, MINUTE) + MINUTE  # the bucket that holds `end`, inclusive
        if done_until is not None:
            end = min(end, done_until)  # above the watermark, the regular range does it
        if start >= end:
            continue
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    for start, end in merged:
        for chunk_start, chunk_end in _chunks(start, end):
            with transaction.atomic():
                _recompute(chunk_start, chunk_end, counts)
    RollupDirtyRange.objects.filter(id__in=[row[0] for row in rows]).delete()
    return len(rows)
