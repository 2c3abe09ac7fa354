"""`promql`: Perfpilot's PromQL engine against a real Prometheus 2.42 over the same remote-written data.

Synthetic data (100 counters, 25 gauges, a gauge with a gap and a 2-instance histogram, one sample a
minute for DAYS days, a few seconds of jitter, counter resets) is encoded once as remote-write 1.0
bodies in time order, half an hour each, and POSTed to both sides: Prometheus started with
--web.enable-remote-write-receiver on its own data dir, and Perfpilot's gunicorn as `make run`
starts it. The conformance corpus of tests/monitoring/test_promql.py then runs as query_range on
both, over the last hours at step 60 s, and a few dashboard queries over the whole DAYS at step 60 s,
split into consecutive windows of at most 11,000 points (Prometheus refuses more per series) on
both sides. Every answer is compared: labels and timestamps exact, values within 1e-9 relative.

The loaded data is kept (Prometheus's data dir and a marker under the bench's var dir, the samples in
its PostgreSQL) and reused by the next run while it is younger than the raw retention allows;
delete the marker to load afresh.
"""

from __future__ import annotations

import http.client
import json
import shutil
import subprocess
import time
import urllib.parse
from pathlib import Path

import numpy as np
from django.conf import settings
from django.contrib.auth import get_user_model

from bench import BenchResult, Figure, options, summary_ms
from bench.query import reset_history
from bench.servers import free_port, web_server
from core.roles import OPERATOR, user_set_role
from core.services import api_token_create
from monitoring.protocols.remote_write import write_request_encode
from tests.monitoring.test_promql import CORPUS
from tests.monitoring.test_promql import _same as conformance_difference

STEP_MS = 60_000
MAX_POINTS = 11_000  # per series and query_range, Prometheus's limit
BODY_MINUTES = 30  # Prometheus's head takes samples at most an hour older than the newest it holds
CORPUS_HOURS = 6
LONG_QUERIES = [
    "sum by (code) (rate(http_requests_total[5m]))",
    "sum(increase(http_requests_total[1h]))",
    "avg_over_time(node_mem_bytes[10m])",
    "histogram_quantile(0.9, sum by (le) (rate(req_duration_seconds_bucket[5m])))",
    "max by (instance) (rate(http_requests_total[5m]))",
]
TARGET_RATIO = 2.0
REMOTE_WRITE_HEADERS = {
    "Content-Type": "application/x-protobuf",
    "Content-Encoding": "snappy",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
}
INSTANCES = 25
CODES = ("200", "301", "404", "500")  # one 5xx code: label_replace(code =~ 5..) stays unique
BUCKETS = ("0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "+Inf")


def _days() -> int:
    return 3 if options.quick else 30


def _series(start_ms: int, minutes: int) -> list[tuple[dict[str, str], np.ndarray, np.ndarray]]:
    """(labels, stamps ms, values) of every synthetic series, deterministic."""
    rng = np.random.default_rng(17)
    base = start_ms + np.arange(minutes, dtype=np.int64) * STEP_MS

    def stamps() -> np.ndarray:
        return base + rng.integers(-2000, 2001, minutes)

    out = []
    for i in range(INSTANCES):
        for code in CODES:
            values = np.cumsum(rng.integers(0, 40, minutes)).astype(np.float64)
            if code == "500" and i % 5 == 0:  # a counter reset a day in
                cut = min(minutes - 1, 1440)
                values[cut:] -= values[cut] - 3
            labels = {"__name__": "http_requests_total", "job": "api", "instance": f"host-{i}", "code": code}
            out.append((labels, stamps(), values))
        memory = np.round(1000 + np.cumsum(rng.uniform(-50, 50, minutes)), 3)
        out.append(({"__name__": "node_mem_bytes", "job": "node", "instance": f"host-{i}"}, stamps(), memory))
    keep = (np.arange(minutes) % 1440) >= 20  # a gauge that stops for 20 minutes a day: the lookback lets it go
    temp = 20.0 + np.arange(minutes) % 7
    out.append(({"__name__": "temp", "instance": "a"}, base[keep], temp[keep]))
    for instance in ("a", "b"):
        observed = rng.integers(0, 10, (minutes, len(BUCKETS)))
        counts = np.cumsum(np.cumsum(observed, axis=1), axis=0).astype(np.float64)
        at = stamps()
        for b, le in enumerate(BUCKETS):
            labels = {"__name__": "req_duration_seconds_bucket", "job": "api", "instance": instance, "le": le}
            out.append((labels, at, counts[:, b]))
    return out


def _bodies(series, start_ms: int, minutes: int) -> list[bytes]:
    """Remote-write bodies of BODY_MINUTES of every series, in time order, as Prometheus sends them."""
    bodies = []
    for first in range(0, minutes, BODY_MINUTES):
        low, high = start_ms + first * STEP_MS - 2000, start_ms + (first + BODY_MINUTES) * STEP_MS - 2000
        chunk = []
        for labels, stamps, values in series:
            lo, hi = np.searchsorted(stamps, [low, high])
            if hi > lo:
                chunk.append((labels, list(zip(values[lo:hi].tolist(), stamps[lo:hi].tolist(), strict=True))))
        bodies.append(write_request_encode(chunk))
    return bodies


def _post(port: int, path: str, bodies: list[bytes], headers: dict[str, str]) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    started = time.perf_counter()
    for body in bodies:
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        payload = response.read()
        if response.status not in (200, 204):
            raise SystemExit(f"promql benchmark: remote write to {path} answered {response.status}: {payload[:300]!r}")
    conn.close()
    return time.perf_counter() - started


class _Prometheus:
    """Debian's Prometheus 2.42 on a kept data dir, remote-write receiver on, retention past DAYS."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        config = data_dir.parent / "prometheus-promql.yml"
        config.write_text("global: {scrape_interval: 1h}\n")
        self.process = subprocess.Popen(
            [
                shutil.which("prometheus") or "/usr/bin/prometheus",
                f"--config.file={config}",
                f"--storage.tsdb.path={data_dir}",
                "--storage.tsdb.retention.time=90d",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--web.enable-remote-write-receiver",
            ],
            stdout=subprocess.DEVNULL,
            stderr=(data_dir.parent / "prometheus-promql.log").open("wb"),
            start_new_session=True,
        )
        deadline = time.monotonic() + 120  # replaying a large head takes a while
        while True:
            if self.process.poll() is not None:
                raise SystemExit("promql benchmark: Prometheus stopped; see prometheus-promql.log")
            try:
                if self.get("/-/ready")[0] == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("promql benchmark: Prometheus was not ready in 120 s")
            time.sleep(0.5)

    def get(self, path: str) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(60)


def _loaded(marker: Path) -> dict | None:
    """The facts of the data a previous run loaded, if they fit this run (same days, still raw)."""
    if not marker.exists():
        return None
    facts = json.loads(marker.read_text())
    age_days = (time.time() * 1000 - facts["start_ms"]) / 86_400_000
    return facts if facts["days"] == _days() and age_days < settings.RETENTION_RAW_DAYS - 1 else None


def _load(prometheus: _Prometheus, port: int, token: str) -> dict:
    """Remote-write the data to both sides (Prometheus's data dir is empty); the facts of it."""
    days = _days()
    reset_history()
    minutes = days * 1440
    start_ms = (int(time.time()) // 60 - minutes) * 60_000
    series = _series(start_ms, minutes)
    bodies = _bodies(series, start_ms, minutes)
    print(f"promql: remote-writing {sum(len(s[1]) for s in series):,} samples in {len(bodies)} bodies", flush=True)
    prometheus_s = _post(prometheus.port, "/api/v1/write", bodies, REMOTE_WRITE_HEADERS)
    perfpilot_s = _post(port, "/prometheus/api/v1/write", bodies, {**REMOTE_WRITE_HEADERS, **_auth(token)})
    facts = {
        "start_ms": start_ms,
        "days": days,
        "series": len(series),
        "samples": int(sum(len(s[1]) for s in series)),
        "bodies": len(bodies),
        "prometheus_write_s": prometheus_s,
        "perfpilot_write_s": perfpilot_s,
    }
    return facts


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _query_range(port: int, path: str, expression: str, start_ms: int, end_ms: int, headers) -> tuple[float, list]:
    query = urllib.parse.urlencode(
        {"query": expression, "start": start_ms / 1000, "end": end_ms / 1000, "step": STEP_MS / 1000}
    )
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    started = time.perf_counter()
    conn.request("GET", f"{path}?{query}", headers=headers)
    response = conn.getresponse()
    payload = response.read()
    elapsed = time.perf_counter() - started
    conn.close()
    body = json.loads(payload)
    if response.status != 200:
        return elapsed, [{"error": body.get("error", str(response.status))}]
    return elapsed, body["data"]["result"]


def _windows(start_ms: int, end_ms: int) -> list[tuple[int, int]]:
    """Consecutive [start, end] windows of at most MAX_POINTS steps covering start..end."""
    windows, low = [], start_ms
    while low <= end_ms:
        high = min(end_ms, low + (MAX_POINTS - 1) * STEP_MS)
        windows.append((low, high))
        low = high + STEP_MS
    return windows


def _keyed(result: list) -> dict:
    if result and "error" in result[0]:
        return {"error": result[0]["error"]}
    return {tuple(sorted(s["metric"].items())): [(float(t), float(v)) for t, v in s["values"]] for s in result}


def _difference(ours: dict, theirs: dict) -> str | None:
    if "error" in ours or "error" in theirs:
        mine, prometheus = ours.get("error", "an answer"), theirs.get("error", "an answer")
        return None if mine == prometheus else f"ours {mine!r}, Prometheus {prometheus!r}"
    return conformance_difference(ours, theirs)


def _compare(sides, expression: str, windows: list[tuple[int, int]]) -> tuple[float, float, str | None]:
    """(Perfpilot seconds, Prometheus seconds, first difference) of the expression over the windows."""
    times = {}
    results = {}
    for name, port, path, headers in sides:
        total, merged = 0.0, {}
        for low, high in windows:
            elapsed, result = _query_range(port, path, expression, low, high, headers)
            total += elapsed
            for key, points in _keyed(result).items():
                if key == "error":
                    merged[key] = points
                else:
                    merged.setdefault(key, []).extend(points)
        times[name], results[name] = total, merged
    return times["perfpilot"], times["prometheus"], _difference(results["perfpilot"], results["prometheus"])


def run() -> BenchResult:
    if _days() + 1 >= settings.RETENTION_RAW_DAYS:
        raise SystemExit(f"the promql benchmark needs PERFPILOT_RETENTION_RAW_DAYS > {_days() + 1}: raw samples only")
    user, _ = get_user_model().objects.get_or_create(username="bench-promql")
    user_set_role(user=user, role=OPERATOR)
    token = api_token_create(user=user, name="bench-promql", via="command").raw
    data_dir = settings.VAR_DIR / "promql-prometheus"
    marker = settings.VAR_DIR / "promql-loaded.json"
    facts = _loaded(marker)
    if facts is None:
        marker.unlink(missing_ok=True)
        shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(parents=True, exist_ok=True)
    prometheus = _Prometheus(data_dir)
    try:
        # Long queries take longer than gunicorn's default 30 s worker timeout before the engine's speed-up.
        with web_server(extra_env={"GUNICORN_CMD_ARGS": "--timeout 900"}) as port:
            if facts is None:
                facts = _load(prometheus, port, token)
                marker.write_text(json.dumps(facts))
            sides = [
                ("perfpilot", port, "/prometheus/api/v1/query_range", _auth(token)),
                ("prometheus", prometheus.port, "/api/v1/query_range", {}),
            ]
            end_ms = facts["start_ms"] + (facts["days"] * 1440 - 1) * STEP_MS
            corpus_window = [(end_ms - CORPUS_HOURS * 3_600_000, end_ms)]
            ours, theirs, mismatches = [], [], {}
            for expression in CORPUS[:3]:  # warm both sides' caches
                _compare(sides, expression, corpus_window)
            for expression in CORPUS:
                mine, prom, problem = _compare(sides, expression, corpus_window)
                ours.append(mine)
                theirs.append(prom)
                if problem:
                    mismatches[expression] = problem
                    print(f"promql: {expression} differs from Prometheus: {problem}", flush=True)
            long_windows = _windows(facts["start_ms"] + 10 * STEP_MS, end_ms)
            long_rows = []
            for expression in LONG_QUERIES[: 2 if options.quick else None]:
                mine, prom, problem = _compare(sides, expression, long_windows)
                long_rows.append((expression, mine, prom))
                if problem:
                    mismatches[f"{facts['days']} days: {expression}"] = problem
                print(f"promql: {facts['days']} days of {expression}: {mine:.2f} s against {prom:.2f} s", flush=True)
    finally:
        prometheus.stop()
    return _result(facts, ours, theirs, long_rows, long_windows, mismatches)


def _result(facts, ours, theirs, long_rows, long_windows, mismatches) -> BenchResult:
    our_p50, our_p95, _ = summary_ms(ours)
    their_p50, their_p95, _ = summary_ms(theirs)
    our_long = sum(row[1] for row in long_rows)
    their_long = sum(row[2] for row in long_rows)
    days = facts["days"]
    figures = [
        Figure("Corpus answers differing from Prometheus", f"{len(mismatches)}", "0", "", "", not mismatches),
        Figure(
            f"Corpus query_range ({CORPUS_HOURS} h, step 60 s), p50",
            f"{our_p50:,.1f} ms",
            "",
            f"{their_p50:,.1f} ms",
            f"{our_p50 / their_p50:.2f}",
        ),
        Figure(
            f"Corpus query_range ({CORPUS_HOURS} h, step 60 s), p95",
            f"{our_p95:,.1f} ms",
            "",
            f"{their_p95:,.1f} ms",
            f"{our_p95 / their_p95:.2f}",
        ),
        Figure(
            f"{days}-day query_range at step 60 s, {len(long_rows)} queries, total",
            f"{our_long:,.2f} s",
            f"<= {TARGET_RATIO:.0f}x Prometheus",
            f"{their_long:,.2f} s",
            f"{our_long / their_long:.2f}",
            our_long <= TARGET_RATIO * their_long,
        ),
    ]
    for expression, mine, prom in long_rows:
        figures.append(
            Figure(f"{days} days: `{expression}`", f"{mine:,.2f} s", "", f"{prom:,.2f} s", f"{mine / prom:.2f}")
        )
    notes = [
        "Baseline: Prometheus 2.42 (Debian's `/usr/bin/prometheus`) over the same remote-written samples, "
        "queried over HTTP from the same client, alternating with Perfpilot expression by expression.",
    ]
    if mismatches:
        notes.append("Mismatches: " + "; ".join(f"`{e}`: {p}" for e, p in list(mismatches.items())[:10]) + ".")
    return BenchResult(
        name="promql",
        title="PromQL query_range against Prometheus 2.42 over the same remote-written data",
        setup=(
            f"{facts['series']} series (100 counters `http_requests_total`, 25 gauges `node_mem_bytes`, a gauge "
            "`temp` with a daily 20-minute gap, a histogram `req_duration_seconds_bucket` of 8 buckets on 2 "
            f"instances), one sample a minute with up to 2 s of jitter for {days} days: "
            f"{facts['samples']:,} samples, remote-written in time order as {facts['bodies']} bodies of "
            f"{BODY_MINUTES} minutes to both sides (Prometheus took {facts['prometheus_write_s']:.0f} s, "
            f"Perfpilot {facts['perfpilot_write_s']:.0f} s). Prometheus runs with "
            "`--web.enable-remote-write-receiver --storage.tsdb.retention.time=90d`; Perfpilot is gunicorn as "
            "`make run` starts it with `PERFPILOT_RETENTION_RAW_DAYS="
            f"{settings.RETENTION_RAW_DAYS}`, so all {days} days are read raw (older ranges would read "
            f"rollups, which Prometheus does not have). Corpus: the {len(ours)} expressions of "
            f"tests/monitoring/test_promql.py, each as one query_range over the last {CORPUS_HOURS} hours at "
            f"step 60 s (3 warm-up queries first). Long queries: {days} days at step 60 s as {len(long_windows)} "
            f"consecutive windows of at most {MAX_POINTS:,} points on both sides (Prometheus refuses more per "
            "series; Grafana would not split them but ask for a larger step); every window's answer is compared "
            "too. Times are from sending the request to reading the whole answer, JSON decoding outside."
            + (" Quick run (`--quick`): 3 days, 2 long queries." if options.quick else "")
        ),
        figures=tuple(figures),
        notes="\n\n".join(notes),
    )
