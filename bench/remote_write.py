"""`remote_write`: Prometheus remote-write ingest against a raw COPY and the JSON push, in one run.

The same samples three ways, alternating over several rounds on an empty table, compared by their
medians: psycopg's binary COPY of the rows (the baseline: bench/ingest.py's), `POST
/api/v1/metrics` with JSON bodies, and `POST /prometheus/api/v1/write` with real remote-write 1.0
bodies (snappy-compressed protobuf WriteRequests, labels sorted, millisecond timestamps, as
Prometheus encodes them). Bodies are Prometheus-shaped: many series with a few samples each, each
series with `job`, `instance` and one more label. Both HTTP sides go through gunicorn as `make run`
starts it, over the same number of keep-alive connections, bodies encoded before the clock starts.
"""

from __future__ import annotations

import json
import statistics
from datetime import UTC, datetime, timedelta

from django.contrib.auth import get_user_model
from django.db import connection

from bench import BenchResult, Figure, options
from bench.ingest import BATCH, CONNECTIONS, _copy_baseline, _post_all, _reset, _truncate_samples
from bench.servers import web_server
from core.roles import OPERATOR, user_set_role
from core.services import api_token_create
from monitoring import storage
from monitoring.protocols.remote_write import write_request_encode

SERIES = 1_000  # per body; BATCH / SERIES samples of each
TARGET_RATIO = 0.5
REMOTE_WRITE_HEADERS = {
    "Content-Type": "application/x-protobuf",
    "Content-Encoding": "snappy",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
}


def _labels(index: int) -> dict[str, str]:
    return {"job": "bench", "instance": f"host-{index % 50}:9100", "series": str(index)}


def _bodies(start: float, batches: int) -> tuple[list[bytes], list[bytes]]:
    """The same samples as remote-write bodies and as JSON push bodies."""
    per_series = BATCH // SERIES
    remote, pushed = [], []
    for batch in range(batches):
        base = start + batch * per_series
        points = [(base + j, float(j % 97)) for j in range(per_series)]
        remote.append(
            write_request_encode(
                [
                    ({"__name__": "bench_remote_write", **_labels(i)}, [(v, round(t * 1000)) for t, v in points])
                    for i in range(SERIES)
                ]
            )
        )
        series = [
            {"metric": "bench_json_push", "labels": _labels(i), "points": [[t, v] for t, v in points]}
            for i in range(SERIES)
        ]
        pushed.append(json.dumps({"series": series}).encode())
    return remote, pushed


def _stored(metric: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM monitoring_sample s JOIN monitoring_series r ON r.id = s.series_id "
            "WHERE r.metric = %s",
            [metric],
        )
        return cursor.fetchone()[0]


def run() -> BenchResult:
    batches, rounds = (11, 3) if options.quick else (41, 5)
    _reset()
    user, _ = get_user_model().objects.get_or_create(username="bench-remote-write")
    user_set_role(user=user, role=OPERATOR)
    token = api_token_create(user=user, name="bench", via="command").raw
    start = (datetime.now(UTC) - timedelta(hours=20)).timestamp()
    specs = [storage.SeriesSpec("bench_copy", _labels(i)) for i in range(SERIES)]
    ids = storage.series_resolve(target_id=None, specs=specs)
    storage.sample_partitions_ensure({datetime.fromtimestamp(start, UTC).date() + timedelta(days=d) for d in (0, 1)})
    remote, pushed = _bodies(start, batches)
    timed = BATCH * (batches - 1)  # the first body of each HTTP side is a warm-up, outside the clock
    copy_rates, json_rates, remote_rates = [], [], []
    with web_server() as port:
        for _ in range(rounds):
            _truncate_samples()
            copy_rates.append(BATCH * batches / _copy_baseline(ids, start, batches))
            _truncate_samples()
            json_rates.append(timed / _post_all(port, token, pushed))
            _truncate_samples()
            remote_rates.append(
                timed
                / _post_all(
                    port,
                    token,
                    remote,
                    path="/prometheus/api/v1/write",
                    headers=REMOTE_WRITE_HEADERS,
                    expected=204,
                )
            )
    stored = _stored("bench_remote_write")
    if stored != BATCH * batches:
        raise SystemExit(f"remote_write benchmark: expected {BATCH * batches} samples stored, found {stored}")
    copy_rate, json_rate, remote_rate = (statistics.median(r) for r in (copy_rates, json_rates, remote_rates))
    body_kib = statistics.mean(len(body) for body in remote) / 1024
    json_kib = statistics.mean(len(body) for body in pushed) / 1024
    rows = ", ".join(
        f"{r / 1000:.0f}k / {j / 1000:.0f}k / {c / 1000:.0f}k"
        for r, j, c in zip(remote_rates, json_rates, copy_rates, strict=True)
    )
    return BenchResult(
        name="remote_write",
        title="Prometheus remote-write ingest against a raw COPY and the JSON push",
        setup=(
            f"{batches} bodies of {BATCH:,} samples per side and round ({SERIES:,} series of "
            f"{BATCH // SERIES} samples each, labels `job`, `instance`, `series`; the same series in every body, "
            "as a Prometheus sends the same series at every scrape, so their labels are decoded once), "
            f"{rounds} rounds alternating "
            "the three sides, each on an empty table; medians compared. Remote write: real remote-write 1.0 "
            f"bodies (snappy-compressed protobuf WriteRequest, {body_kib:,.0f} KiB each; the JSON bodies "
            f"are {json_kib:,.0f} KiB) to `POST /prometheus/api/v1/write`; JSON push: the same samples to "
            "`POST /api/v1/metrics`; both to gunicorn as `make run` starts it over "
            f"{CONNECTIONS} keep-alive connections, the first body of each outside the clock. Baseline: psycopg "
            f"binary COPY of the same rows (built beforehand) over {CONNECTIONS} connections. The stored "
            "remote-written samples were counted afterwards."
            + (" Quick run (`--quick`): fewer bodies and rounds." if options.quick else "")
        ),
        figures=(
            Figure("Raw COPY (baseline), median", f"{copy_rate:,.0f} samples/s"),
            Figure("POST /api/v1/metrics (JSON push), median", f"{json_rate:,.0f} samples/s"),
            Figure(
                "POST /prometheus/api/v1/write, median",
                f"{remote_rate:,.0f} samples/s",
                f">= {TARGET_RATIO:.0%} of COPY",
                f"{copy_rate:,.0f} samples/s",
                f"{remote_rate / copy_rate:.2f}",
                remote_rate >= TARGET_RATIO * copy_rate,
            ),
            Figure(
                "Remote write against JSON push",
                f"{remote_rate:,.0f} samples/s",
                "",
                f"{json_rate:,.0f} samples/s",
                f"{remote_rate / json_rate:.2f}",
            ),
        ),
        notes=f"Rounds (remote write / JSON push / COPY, samples/s): {rows}.",
    )
