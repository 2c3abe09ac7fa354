"""`http`: the web server under load, and the pages operators keep open, with a month of history.

Loads 30 days of history (a sample every 10 s) for 20 series, the key-chart series of the four
built-in targets, through the production write and rollup paths; then starts gunicorn as
`make run` does and measures:

- `GET /api/v1/performance/status` (token auth, four health checks) with wrk at 32 connections,
  against wrk on `/healthz` (the cheapest Django view) in the same run;
- the full Overview page and its live-charts partial (what HTMX fetches every few seconds), one
  signed-in client, sequential requests, against `/healthz` timed the same way.
"""

from __future__ import annotations

import http.client
import re
import shutil
import subprocess
import time
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from bench import BenchResult, Figure, summary_ms
from bench.query import load_history, reset_history, vacuum_analyze
from bench.servers import web_server
from core.roles import VIEWER, user_set_role
from core.services import api_token_create
from monitoring import storage
from monitoring.models import Target
from monitoring.services.rollups import MINUTE, floor_time, rollups_run
from monitoring.services.targets import targets_register_builtin

DAYS = 30
WRK_CONNECTIONS = 32
WRK_SECONDS = 10
PAGE_REPS = 100
WARMUP = 5
STATUS_MIN_RPS = 1000
STATUS_MAX_P99_MS = 50.0
OVERVIEW_MAX_P95_MS = 150.0
PARTIAL_MAX_P95_MS = 80.0
CHART_MARKUP = b'class="card chart-card"'  # proves a page came back with its charts

# The 20 series the Overview charts: the key-chart series of the built-in targets.
KEY_SERIES: dict[str, list[tuple[str, dict[str, str]]]] = {
    Target.Kind.HOST: [
        ("host_cpu_percent", {"cpu": "total"}),
        ("host_memory_used_percent", {}),
        ("host_swap_used_percent", {}),
        ("host_disk_used_percent", {"mount": "/"}),
        ("up", {}),
    ],
    Target.Kind.POSTGRES: [
        ("postgres_commits_per_second", {}),
        ("postgres_rollbacks_per_second", {}),
        ("postgres_connections", {"state": "active"}),
        ("postgres_connections", {"state": "idle"}),
        ("postgres_connections", {"state": "idle_in_transaction"}),
        ("postgres_cache_hit_ratio_percent", {}),
    ],
    Target.Kind.REDIS: [
        ("redis_used_memory_bytes", {}),
        ("redis_used_memory_rss_bytes", {}),
        ("redis_hit_ratio_percent", {}),
    ],
    Target.Kind.CELERY: [("celery_queue_length", {"queue": queue}) for queue in ("default", "collect", "notify")]
    + [("up", {}), ("collect_duration_seconds", {}), ("celery_workers_online", {})],
}


def key_series_reset() -> list[int]:
    """An empty history, the built-in targets and the ids of their key-chart series (KEY_SERIES)."""
    reset_history()
    targets_register_builtin()
    series_ids = []
    for kind, series in KEY_SERIES.items():
        target = Target.objects.get(builtin=True, kind=kind)
        specs = [storage.SeriesSpec(metric, labels) for metric, labels in series]
        series_ids += storage.series_resolve(target_id=target.id, specs=specs)
    return series_ids


def run() -> BenchResult:
    if not shutil.which("wrk"):
        raise SystemExit("the http benchmark needs wrk: apt-get install wrk (make bench installs it as root)")
    series_ids = key_series_reset()
    now = floor_time(timezone.now(), MINUTE)
    print(f"loading {DAYS} days of {len(series_ids)} series every 10 s…", flush=True)
    _, loaded = load_history(series_ids, now - timedelta(days=DAYS), now)
    rollups_run(now=now)
    vacuum_analyze()

    user, _ = get_user_model().objects.get_or_create(username="bench-http")
    user_set_role(user=user, role=VIEWER)
    token = api_token_create(user=user, name="bench-http", via="command").raw
    browser = Client()
    browser.force_login(user)
    cookie = f"sessionid={browser.cookies['sessionid'].value}"

    with web_server() as port:
        print(f"wrk: {WRK_CONNECTIONS} connections for {WRK_SECONDS} s on /healthz and on the status API…", flush=True)
        bearer = {"Authorization": f"Bearer {token}"}
        _wrk(port, "/api/v1/performance/status", bearer, seconds=3)  # warm-up: both workers, caches, connections
        base = _wrk(port, "/healthz", {})
        status = _wrk(port, "/api/v1/performance/status", bearer)
        print(f"timing the Overview page and its charts partial x{PAGE_REPS}…", flush=True)
        page_headers = {"Cookie": cookie}
        partial_headers = {**page_headers, "HX-Request": "true"}
        health_ms = summary_ms(_timings(port, "/healthz", {}, expect=b"ok"))
        overview_ms = summary_ms(_timings(port, "/", page_headers, expect=b'class="card chart-card"'))
        partial_ms = summary_ms(
            _timings(port, "/?fragment=targets", partial_headers, expect=b'class="card chart-card"')
        )

    healthz_p95 = health_ms[1]
    figures = (
        Figure(
            "status API throughput at 32 connections",
            f"{status['rps']:,.0f} req/s",
            f">= {STATUS_MIN_RPS:,} req/s",
            f"/healthz: {base['rps']:,.0f} req/s",
            f"{status['rps'] / base['rps']:.2f}",
            status["rps"] >= STATUS_MIN_RPS and status["errors"] == 0,
        ),
        Figure(
            "status API latency p50 / p99",
            f"{status['p50']:.1f} / {status['p99']:.1f} ms",
            f"p99 < {STATUS_MAX_P99_MS:.0f} ms",
            f"/healthz: {base['p50']:.1f} / {base['p99']:.1f} ms",
            f"{status['p99'] / base['p99']:.2f}",
            status["p99"] < STATUS_MAX_P99_MS,
        ),
        Figure(
            "Overview page p50 / p95",
            f"{overview_ms[0]:.1f} / {overview_ms[1]:.1f} ms",
            f"p95 < {OVERVIEW_MAX_P95_MS:.0f} ms",
            f"/healthz: {health_ms[0]:.1f} / {healthz_p95:.1f} ms",
            f"{overview_ms[1] / healthz_p95:.0f}x",
            overview_ms[1] < OVERVIEW_MAX_P95_MS,
        ),
        Figure(
            "Overview live-charts partial p50 / p95",
            f"{partial_ms[0]:.1f} / {partial_ms[1]:.1f} ms",
            f"p95 < {PARTIAL_MAX_P95_MS:.0f} ms",
            f"/healthz: {health_ms[0]:.1f} / {healthz_p95:.1f} ms",
            f"{partial_ms[1] / healthz_p95:.0f}x",
            partial_ms[1] < PARTIAL_MAX_P95_MS,
        ),
        Figure(
            "requests that failed under wrk (status API)", f"{status['errors']}", "0", "", "", status["errors"] == 0
        ),
    )
    return BenchResult(
        name="http",
        title="the web server under load, and the Overview with a month of history",
        setup=(
            f"Stored: {DAYS} days of {len(series_ids)} series (the key-chart series of the four built-in targets) at "
            f"one sample every 10 s ({loaded:,} raw samples), rolled up. gunicorn started as `make run` starts it "
            f"(2 workers x 4 threads). Throughput: wrk, 2 threads, {WRK_CONNECTIONS} keep-alive connections, "
            f"{WRK_SECONDS} s per URL after a 3 s warm-up, on the same 2 cores as the server. Pages: one "
            f"signed-in client, {PAGE_REPS} sequential requests after {WARMUP} warm-ups; the partial is the "
            "Overview's live charts (`?fragment=targets` with `HX-Request`), 1 hour of every key chart."
        ),
        figures=figures,
    )


_WRK_LATENCY = re.compile(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", re.MULTILINE)
_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _wrk(port: int, path: str, headers: dict[str, str], *, seconds: int = WRK_SECONDS) -> dict:
    argv = ["wrk", "-t2", f"-c{WRK_CONNECTIONS}", f"-d{seconds}s", "--latency", "--timeout", "5s"]
    for name, value in headers.items():
        argv += ["-H", f"{name}: {value}"]
    output = subprocess.run([*argv, f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True, check=True)
    text = output.stdout
    latency = {q: float(v) * _UNIT_MS[u] for q, v, u in _WRK_LATENCY.findall(text)}
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    errors = int(non_2xx.group(1)) if non_2xx else 0
    if socket_errors:
        errors += sum(int(n) for n in socket_errors.groups())
    return {"rps": rps, "p50": latency["50"], "p99": latency["99"], "errors": errors}


def _timings(port: int, path: str, headers: dict[str, str], *, expect: bytes) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    timings = []
    for index in range(WARMUP + PAGE_REPS):
        started = time.perf_counter()
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        body = response.read()
        elapsed = time.perf_counter() - started
        if response.status != 200 or expect not in body:
            raise SystemExit(f"http benchmark: GET {path} answered {response.status}: {body[:300]!r}")
        if index >= WARMUP:
            timings.append(elapsed)
    conn.close()
    return timings
