"""`forwarding`: what remote-write forwarding costs the writes, and how fast the forwarder drains its queue.

Write cost: `storage.samples_write_columns` (the push and remote-write path) with forwarding off and on
(on: the COPY and the outbox INSERT in one transaction), alternating over several rounds on an empty
table, in two shapes: push-sized writes of 10,000 samples and collection-sized writes of 100; medians
compared. Drain: the queue of one round's samples sent by `forwarding_run` to a local remote-write
receiver (a threaded http.server on loopback that reads each body and answers 204), in batches of
PERFPILOT_FORWARD_BATCH_SAMPLES; the receiver's count of samples checked against what was queued.
"""

from __future__ import annotations

import statistics
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cramjam
import numpy as np
from django.conf import settings
from django.db import connection
from django.test import override_settings

from bench import BenchResult, Figure, options
from monitoring import storage
from monitoring.models import ForwardingState, ForwardOutbox
from monitoring.protocols.remote_write import RawWriteRequest
from monitoring.services.forwarding import forwarding_run

SERIES = 1_000
SHAPES = ((10_000, "push-sized writes of 10,000 samples"), (100, "collection-sized writes of 100 samples"))


def _truncate() -> None:
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE monitoring_sample, monitoring_rollup_1m, monitoring_rollup_1h")
    ForwardOutbox.objects.all().delete()
    ForwardingState.objects.all().delete()


def _writes(ids: np.ndarray, start: float, per_write: int, total: int) -> float:
    """Seconds to store `total` samples in writes of `per_write`."""
    series = np.resize(ids, per_write)
    elapsed = 0.0
    for index in range(total // per_write):
        stamps = np.full(per_write, start + index, dtype=np.float64)
        values = np.arange(per_write, dtype=np.float64)
        began = time.perf_counter()
        storage.samples_write_columns(series_ids=series, stamps=stamps, values=values)
        elapsed += time.perf_counter() - began
    return elapsed


class _Receiver:
    def __init__(self) -> None:
        self.samples = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = RawWriteRequest.FromString(bytes(cramjam.snappy.decompress_raw(body)))
                receiver.samples += sum(len(ts.samples) for ts in request.timeseries)
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/api/v1/write"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def run() -> BenchResult:
    total, rounds = (20_000, 3) if options.quick else (200_000, 5)
    _truncate()
    storage.series_cache.clear()
    ids = np.array(
        storage.series_resolve(
            target_id=None, specs=[storage.SeriesSpec("bench_forwarding", {"series": str(i)}) for i in range(SERIES)]
        ),
        dtype=np.int64,
    )
    start = (datetime.now(UTC) - timedelta(hours=2)).timestamp()
    storage.sample_partitions_ensure({datetime.fromtimestamp(start, UTC).date() + timedelta(days=d) for d in (0, 1)})
    receiver = _Receiver()
    rates: dict[tuple[int, bool], list[float]] = {(size, on): [] for size, _ in SHAPES for on in (False, True)}
    drains: list[float] = []
    queued_bytes = 0
    for _ in range(rounds):
        for size, _ in SHAPES:
            for on in (False, True):
                _truncate()
                with override_settings(FORWARD_REMOTE_WRITE_URL=receiver.url if on else ""):
                    rates[(size, on)].append(total / _writes(ids, start, size, total))
        # The queue left by the last (on) write shape: drain it.
        with connection.cursor() as cursor:
            cursor.execute("SELECT coalesce(sum(octet_length(rows)), 0) FROM monitoring_forwardoutbox")
            queued_bytes = cursor.fetchone()[0]
        receiver.samples = 0
        with override_settings(FORWARD_REMOTE_WRITE_URL=receiver.url):
            began = time.perf_counter()
            result = forwarding_run(budget_seconds=3600)
            drains.append(total / (time.perf_counter() - began))
        if result.sent_samples != total or receiver.samples != total or ForwardOutbox.objects.exists():
            raise SystemExit(
                f"forwarding benchmark: queued {total}, sent {result.sent_samples}, received {receiver.samples}"
            )
    receiver.server.shutdown()
    _truncate()
    figures = []
    for size, label in SHAPES:
        off, on = statistics.median(rates[(size, False)]), statistics.median(rates[(size, True)])
        figures.append(Figure(f"Writes, forwarding off ({label}), median", f"{off:,.0f} samples/s"))
        figures.append(
            Figure(
                f"Writes, forwarding on ({label}), median",
                f"{on:,.0f} samples/s",
                "",
                f"{off:,.0f} samples/s",
                f"{on / off:.2f}",
            )
        )
    figures.append(Figure("Forwarder drain to a local receiver, median", f"{statistics.median(drains):,.0f} samples/s"))
    figures.append(Figure("Queue size in the database", f"{queued_bytes / total:.1f} bytes/sample (LZ4)"))
    return BenchResult(
        name="forwarding",
        title="Remote-write forwarding: write cost and drain rate",
        setup=(
            f"{total:,} samples per side and round over {SERIES:,} series, written with "
            "`storage.samples_write_columns` (the push and remote-write path) in one process, forwarding off "
            f"and on alternating, {rounds} rounds, each on an empty table; medians compared. Drain: "
            f"`forwarding_run` sending the {total:,} queued samples of the collection-sized round in batches of "
            f"{settings.FORWARD_BATCH_SAMPLES:,} to a local receiver on loopback (decodes each body, answers 204); "
            "received counted against queued."
            + (" Quick run (`--quick`): fewer samples and rounds." if options.quick else "")
        ),
        figures=tuple(figures),
        notes=(
            "Forwarding on adds, per write, one statement that inserts the COPY's records (LZ4-compressed) into "
            "the outbox and marks the rollups' dirty range, in the same "
            "transaction, plus its COMMIT. Rounds (samples/s, off / on): "
            + "; ".join(
                f"{size:,}: "
                + ", ".join(
                    f"{a / 1000:.0f}k/{b / 1000:.0f}k"
                    for a, b in zip(rates[(size, False)], rates[(size, True)], strict=True)
                )
                for size, _ in SHAPES
            )
            + ". Drains (samples/s): "
            + ", ".join(f"{d / 1000:.1f}k" for d in drains)
            + "."
        ),
    )
