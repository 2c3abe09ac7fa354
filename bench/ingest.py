"""`ingest`: POST /api/v1/metrics through gunicorn against a raw psycopg COPY into the same table.

Baseline: psycopg's binary COPY of the same (series_id, ts, value) rows, in batches of the same
size — the fastest way to get samples into monitoring_sample. Measured: the whole push path —
HTTP to a real gunicorn started as `make run` starts it (2 workers x 4 threads, access log,
multiprocess Prometheus metrics), token auth, JSON parsing, validation of every point, series
resolution and the COPY — with request bodies serialised before the clock starts. Both sides use
2 concurrent connections, alternate over several rounds on an empty table, and are compared by
their medians.
"""

from __future__ import annotations

import http.client
import json
import statistics
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection

from bench import BenchResult, Figure
from bench.servers import web_server
from core.roles import OPERATOR, user_set_role
from core.services import api_token_create
from monitoring import storage

ROOT = Path(__file__).resolve().parent.parent
BATCH = 10_000
BATCHES = 40  # 400,000 samples per side
SERIES_PER_BATCH = 10
CONNECTIONS = 2
ROUNDS = 5
TARGET_RATIO = 0.5
AIM = 200_000


def _reset() -> None:
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE monitoring_sample, monitoring_rollup_1m, monitoring_rollup_1h")
    storage.series_cache.clear()


def _bodies(start: float) -> list[bytes]:
    bodies = []
    per_series = BATCH // SERIES_PER_BATCH
    for batch in range(BATCHES):
        base = start + batch * per_series
        series = [
            {
                "metric": "bench_ingest",
                "labels": {"copy": str(i)},
                "points": [[base + j, float(j % 97)] for j in range(per_series)],
            }
            for i in range(SERIES_PER_BATCH)
        ]
        bodies.append(json.dumps({"series": series}).encode())
    return bodies


def _timed_threads(threads: list[threading.Thread]) -> float:
    """Seconds from starting all threads until the last one finished."""
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def _copy_baseline(series_ids: list[int], start: float, batches: int = BATCHES) -> float:
    """Seconds to COPY all batches over CONNECTIONS parallel connections (rows built beforehand).

    Each batch has BATCH rows: BATCH / len(series_ids) consecutive seconds of every series."""
    per_series = BATCH // len(series_ids)
    rows_by_batch = []
    for batch in range(batches):
        base = start + batch * per_series
        rows_by_batch.append(
            [
                (sid, datetime.fromtimestamp(base + j, UTC), float(j % 97))
                for sid in series_ids
                for j in range(per_series)
            ]
        )
    db = settings.DATABASES["default"]
    conninfo = psycopg.conninfo.make_conninfo(
        host=db["HOST"], port=db["PORT"], user=db["USER"], password=db["PASSWORD"], dbname=db["NAME"]
    )
    connections = [psycopg.connect(conninfo, autocommit=True) for _ in range(CONNECTIONS)]

    def worker(conn, share) -> None:
        for rows in share:
            with (
                conn.cursor() as cur,
                cur.copy("COPY monitoring_sample (series_id, ts, value) FROM STDIN (FORMAT BINARY)") as copy,
            ):
                copy.set_types(["int8", "timestamptz", "float8"])
                for row in rows:
                    copy.write_row(row)

    threads = [
        threading.Thread(target=worker, args=(conn, rows_by_batch[i::CONNECTIONS]))
        for i, conn in enumerate(connections)
    ]
    elapsed = _timed_threads(threads)
    for conn in connections:
        conn.close()
    return elapsed


def _post_all(
    port: int,
    token: str,
    bodies: list[bytes],
    *,
    path: str = "/api/v1/metrics",
    headers: dict[str, str] | None = None,
    expected: int = 202,
) -> float:
    """Seconds to POST all bodies but the first (the warm-up) over CONNECTIONS keep-alive connections."""
    headers = {"Authorization": f"Bearer {token}", **(headers or {"Content-Type": "application/json"})}
    errors: list[str] = []

    def worker(chunk: list[bytes]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for body in chunk:
            conn.request("POST", path, body=body, headers=headers)
            response = conn.getresponse()
            payload = response.read()
            if response.status != expected:
                errors.append(f"{response.status}: {payload[:200]!r}")

    # Warm-up: series creation and first partitions happen once, outside the clock.
    worker(bodies[:1])
    chunks = [bodies[1 + i :: CONNECTIONS] for i in range(CONNECTIONS)]
    threads = [threading.Thread(target=worker, args=(chunk,)) for chunk in chunks]
    elapsed = _timed_threads(threads)
    if errors:
        raise SystemExit(f"ingest benchmark: {len(errors)} requests failed, first: {errors[0]}")
    return elapsed


def _truncate_samples() -> None:
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE monitoring_sample")


def run() -> BenchResult:
    _reset()
    user, _ = get_user_model().objects.get_or_create(username="bench-ingest")
    user_set_role(user=user, role=OPERATOR)
    token = api_token_create(user=user, name="bench", via="command").raw
    start = (datetime.now(UTC) - timedelta(hours=20)).timestamp()
    specs = [storage.SeriesSpec("bench_ingest_copy", {"copy": str(i)}) for i in range(SERIES_PER_BATCH)]
    ids = storage.series_resolve(target_id=None, specs=specs)
    storage.sample_partitions_ensure(
        {datetime.fromtimestamp(start, UTC).date() + timedelta(days=d) for d in range(0, 2)}
    )
    bodies = _bodies(start)
    copy_rates, api_rates = [], []
    with web_server() as port:
        # Alternate the two sides, each round on an empty table, so that neither side always
        # writes into the larger indexes or the warmer cache.
        for _ in range(ROUNDS):
            _truncate_samples()
            copy_rates.append(BATCH * BATCHES / _copy_baseline(ids, start))
            _truncate_samples()
            api_rates.append(BATCH * (BATCHES - 1) / _post_all(port, token, bodies))
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM monitoring_sample s JOIN monitoring_series r ON r.id = s.series_id "
            "WHERE r.metric = 'bench_ingest'"
        )
        stored = cursor.fetchone()[0]
    if stored != BATCH * BATCHES:
        raise SystemExit(f"ingest benchmark: expected {BATCH * BATCHES} samples stored, found {stored}")
    copy_rate = statistics.median(copy_rates)
    api_rate = statistics.median(api_rates)
    ratio = api_rate / copy_rate
    rounds = ", ".join(f"{a / 1000:.0f}k vs {c / 1000:.0f}k" for a, c in zip(api_rates, copy_rates, strict=True))
    return BenchResult(
        name="ingest",
        title="push ingestion against a raw COPY",
        setup=(
            f"{BATCHES} batches of {BATCH:,} samples ({SERIES_PER_BATCH} series each) per side and round, "
            f"{ROUNDS} rounds alternating the sides, each on an empty table; medians compared. Baseline: psycopg "
            f"binary COPY (`write_row`, rows built beforehand) over {CONNECTIONS} parallel connections. Measured: "
            "`POST /api/v1/metrics` to gunicorn started as `make run` starts it (2 workers x 4 threads, access log, "
            f"multiprocess metrics) over {CONNECTIONS} "
            "keep-alive connections, bodies serialised beforehand; the first request of a round (series lookup) "
            "is outside the clock. The stored samples were counted afterwards."
        ),
        figures=(
            Figure("Raw COPY (baseline), median", f"{copy_rate:,.0f} samples/s"),
            Figure(
                "POST /api/v1/metrics, median",
                f"{api_rate:,.0f} samples/s",
                f">= {TARGET_RATIO:.0%} of COPY",
                f"{copy_rate:,.0f} samples/s",
                f"{ratio:.2f}",
                ratio >= TARGET_RATIO,
            ),
            Figure("Aim: 200,000 samples/s", f"{api_rate:,.0f} samples/s", f">= {AIM:,}", "", "", api_rate >= AIM),
        ),
        notes=f"Rounds (API vs COPY, samples/s): {rounds}.",
    )
