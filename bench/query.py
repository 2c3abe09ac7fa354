"""`query`: a 30-day chart of a 10-second series is fast, and stays flat as stored history grows 10x.

Loads 30 days of one series at one sample every 10 s (259,200 raw samples) with
storage.samples_write and rolls them up with rollups_run, then times series_query over the 30
days against the baseline a chart without rollups would need: reading every raw point of the
range. Then it loads the same 30 days for nine more series, which arrive below the rollup
watermark and so go through the late-sample (dirty range) path, and times the same query again.
"""

from __future__ import annotations

import math
import random
import re
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection
from django.utils import timezone

from bench import BenchResult, Figure, summary_ms
from monitoring import storage
from monitoring.models import RollupDirtyRange, RollupWatermark, Series
from monitoring.selectors.series import series_query
from monitoring.services.retention import sample_partitions_list
from monitoring.services.rollups import MINUTE, floor_time, rollups_run

DAYS = 30
INTERVAL = timedelta(seconds=10)
GROWTH = 10  # series stored once the history has grown
MAX_POINTS = 1500
WARMUP = 5
QUERY_REPS = 200
BASELINE_REPS = 50
TARGET_P95_MS = 30.0
TARGET_SPEEDUP = 20.0
FLAT_LIMIT = 1.25  # "flat": p95 after growth at most this times the p95 before

_BASELINE_SQL = "SELECT ts, value FROM monitoring_sample WHERE series_id = %s AND ts >= %s AND ts < %s ORDER BY ts"


def run() -> BenchResult:
    if settings.RETENTION_RAW_DAYS <= DAYS:
        raise SystemExit(f"the query benchmark needs PERFPILOT_RETENTION_RAW_DAYS > {DAYS} to keep its raw samples")
    reset_history()
    now = floor_time(timezone.now(), MINUTE)
    start = now - timedelta(days=DAYS)
    specs = [storage.SeriesSpec(metric="bench_query", labels={"copy": str(i)}) for i in range(GROWTH)]
    ids = storage.series_resolve(target_id=None, specs=specs)
    measured = ids[0]

    print(f"loading {DAYS} days of 1 series every {INTERVAL.seconds} s…", flush=True)
    load_s, loaded = load_history([measured], start, now)
    first_rollup = rollups_run(now=now)
    vacuum_analyze()
    sizes_before = _sizes()

    def query() -> int:
        result = series_query(series_ids=[measured], start=start, end=now, max_points=MAX_POINTS)
        return len(result.series[measured])

    def baseline() -> int:
        with connection.cursor() as cursor:
            cursor.execute(_BASELINE_SQL, [measured, start, now])
            return len(cursor.fetchall())

    probe = series_query(series_ids=[measured], start=start, end=now, max_points=MAX_POINTS)
    points = len(probe.series[measured])
    partitions = len(sample_partitions_list())
    print(f"timing series_query x{QUERY_REPS} and the raw baseline x{BASELINE_REPS}…", flush=True)
    q50, q95, _ = summary_ms(_timings(query, QUERY_REPS))
    baseline_rows = baseline()
    b50, b95, _ = summary_ms(_timings(baseline, BASELINE_REPS))

    print(f"growing the stored history {GROWTH}x ({GROWTH - 1} more series over the same {DAYS} days)…", flush=True)
    _, grown = load_history(ids[1:], start, now)
    dirty = RollupDirtyRange.objects.count()
    late_rollup = rollups_run(now=now)
    vacuum_analyze()
    sizes_after = _sizes()
    print(f"timing series_query x{QUERY_REPS} again…", flush=True)
    g50, g95, _ = summary_ms(_timings(query, QUERY_REPS))
    plan = _plan(query)

    speedup95, speedup50 = b95 / q95, b50 / q50
    growth95 = g95 / q95
    figures = (
        Figure(
            name="series_query, 30 days of one series: p50 / p95",
            value=f"{q50:.2f} / {q95:.2f} ms",
            target=f"p95 < {TARGET_P95_MS:.0f} ms",
            passed=q95 < TARGET_P95_MS,
        ),
        Figure(
            name="points returned",
            value=f"{points:,} ({probe.resolution} rollups, step {probe.step_seconds} s)",
            target=f"≤ {MAX_POINTS:,}",
            passed=points <= MAX_POINTS,
        ),
        Figure(
            name="series_query against reading the raw points (p95)",
            value=f"{q95:.2f} ms",
            target=f"≥ {TARGET_SPEEDUP:.0f}x faster",
            baseline=f"plain SELECT of all {baseline_rows:,} raw points: {b50:.1f} / {b95:.1f} ms (p50 / p95)",
            ratio=f"{speedup95:.0f}x (p50: {speedup50:.0f}x)",
            passed=speedup95 >= TARGET_SPEEDUP,
        ),
        Figure(
            name=f"series_query after the stored history grew {GROWTH}x: p50 / p95",
            value=f"{g50:.2f} / {g95:.2f} ms",
            target=f"flat: ≤ {FLAT_LIMIT}x the p95 before",
            baseline=f"before the growth: {q50:.2f} / {q95:.2f} ms",
            ratio=f"{growth95:.2f}x (p50: {g50 / q50:.2f}x)",
            passed=growth95 <= FLAT_LIMIT,
        ),
        Figure(
            name="load: samples_write (binary COPY)",
            value=f"{loaded:,} samples in {load_s:.1f} s ({loaded / load_s:,.0f}/s)",
        ),
        Figure(
            name="rollups_run, first run over 30 days of 1 series",
            value=f"{first_rollup.duration_ms / 1000:.2f} s ({first_rollup.minute_buckets:,} 1m buckets)",
        ),
        Figure(
            name=f"rollups_run after {grown:,} late samples ({dirty} dirty ranges)",
            value=f"{late_rollup.duration_ms / 1000:.2f} s ({late_rollup.minute_buckets:,} 1m buckets)",
        ),
    )
    setup = f"""
Stored: one series with a sample every {INTERVAL.seconds} s for {DAYS} days ({loaded:,} raw samples in
{partitions} day partitions), written with `storage.samples_write` and rolled up with `rollups_run`
(stored: {sizes_before}). Measured: `series_query` over those {DAYS} days with `max_points={MAX_POINTS}`,
{QUERY_REPS} repetitions after {WARMUP} warm-up runs, against the baseline of the same run: a plain
`SELECT ts, value … ORDER BY ts` of every raw point of the range, fetched into Python,
{BASELINE_REPS} repetitions. `VACUUM ANALYZE` runs after each load, as autovacuum would in service.

History grown {GROWTH}x: {GROWTH - 1} more series with the same {DAYS} days at the same rate
({grown:,} more raw samples; stored: {sizes_after}), then the same query on the first series. We grew the
number of series rather than the length of the history because retention caps the length: raw
samples and 1-minute rollups never hold more than their retention, so in service the stored
history grows with the number of series. The new samples were older than the rollup watermark,
so they were rolled up through the late-sample path (dirty ranges), which this run also exercised.
"""
    executed = re.search(r"Execution Time: ([0-9.]+) ms", plan)
    where = (
        f"PostgreSQL's own execution time in this plan is {executed.group(1)} ms of the {g50:.1f} ms p50, "
        "most of it the HashAggregate over the one-minute buckets of the range; the rest is the "
        "watermark lookup, the round trips, and building the points in Python. "
        if executed
        else ""
    )
    notes = f"{where}Query plan of `series_query` (EXPLAIN ANALYZE, after the growth):\n\n```\n{plan}\n```"
    return BenchResult(name="query", title="30-day chart reads", setup=setup, figures=figures, notes=notes)


def reset_history() -> None:
    """Empty the bench database's samples, rollups and series (it holds nothing else of value)."""
    with connection.cursor() as cursor:
        for partition in sample_partitions_list():
            cursor.execute(f"DROP TABLE IF EXISTS {partition.name}")
        cursor.execute("TRUNCATE monitoring_rollup_1m, monitoring_rollup_1h")
    RollupWatermark.objects.all().delete()
    RollupDirtyRange.objects.all().delete()
    Series.objects.all().delete()
    storage.sample_partitions_forget()
    storage.series_cache.clear()


def load_history(series_ids: list[int], start: datetime, end: datetime) -> tuple[float, int]:
    """Write every INTERVAL from start to end for each series, a day per COPY; (seconds, samples)."""
    written = 0
    elapsed = 0.0
    day = timedelta(days=1)
    for series_id in series_ids:
        rng = random.Random(series_id)
        chunk_start = start
        while chunk_start < end:
            chunk_end = min(chunk_start + day, end)
            rows = []
            ts = chunk_start
            while ts < chunk_end:
                phase = (ts.timestamp() % 86400) / 86400 * 2 * math.pi  # a daily cycle, plus noise
                rows.append((series_id, ts, 50 + 20 * math.sin(phase) + rng.gauss(0, 5)))
                ts += INTERVAL
            began = time.perf_counter()  # only the write is timed, not generating the rows
            written += storage.samples_write(rows)
            elapsed += time.perf_counter() - began
            chunk_start = chunk_end
    return elapsed, written


def vacuum_analyze() -> None:
    with connection.cursor() as cursor:
        for table in ("monitoring_sample", "monitoring_rollup_1m", "monitoring_rollup_1h"):
            cursor.execute(f"VACUUM ANALYZE {table}")


def _sizes() -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT (SELECT count(*) FROM monitoring_sample), (SELECT count(*) FROM monitoring_rollup_1m), "
            "(SELECT count(*) FROM monitoring_rollup_1h), "
            "(SELECT coalesce(sum(pg_total_relation_size(inhrelid)), 0) FROM pg_inherits "
            " WHERE inhparent = 'monitoring_sample'::regclass), "
            "pg_total_relation_size('monitoring_rollup_1m'), pg_total_relation_size('monitoring_rollup_1h')"
        )
        raw, m1, h1, raw_bytes, m1_bytes, h1_bytes = cursor.fetchone()
    mib = 1024 * 1024
    return (
        f"{raw:,} raw samples ({raw_bytes / mib:.0f} MiB), {m1:,} 1-minute buckets "
        f"({m1_bytes / mib:.1f} MiB), {h1:,} 1-hour buckets ({h1_bytes / mib:.2f} MiB)"
    )


def _timings(call: Callable[[], int], repetitions: int) -> list[float]:
    for _ in range(WARMUP):
        call()
    timings = []
    for _ in range(repetitions):
        began = time.perf_counter()
        call()
        timings.append(time.perf_counter() - began)
    return timings


def _plan(call: Callable[[], int]) -> str:
    """EXPLAIN ANALYZE of the SQL that `call` sends (captured with an execute wrapper)."""
    captured: list[tuple[str, object]] = []

    def capture(execute, sql, params, many, context):
        captured.append((sql, params))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(capture):
        call()
    sql, params = captured[-1]
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + sql, params)
        return "\n".join(row[0] for row in cursor.fetchall())
