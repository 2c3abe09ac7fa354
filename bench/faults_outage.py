"""`faults_outage`: how a `make run` control plane rides out its own PostgreSQL and Redis going down.

Starts `manage.py run_control_plane` on its own data dir (var/bench/faults-outage) and free ports,
then, under load from three signed-in clients asking in turn for pages, an HTMX fragment, the API
and /metrics (tests/chaos.py's LOAD):

1. stops the embedded PostgreSQL for 20 s, keeping its port held so the supervisor cannot start it
   earlier (its attempts fail and back off, as with a port taken by another program);
2. stops the embedded Redis for 30 s the same way, with 20 tasks queued just before;
3. kills both with SIGKILL and lets the supervisor bring them back.

For each: the answers by status during the fault and the recovery (500s must be 0; every 503 in
its door's format), and the seconds from the end of the fault until every door answers 200 again
(and, for Redis, until the worker has consumed the queued tasks and a new one).
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from collections import Counter

from django.conf import settings

from bench import BenchResult, Figure
from core.outages import OUTAGE_LOG_INTERVAL_SECONDS
from tests.chaos import (
    all_normal,
    answer_is_a_proper_503,
    control_plane_start,
    control_plane_stop,
    load,
    pid_of,
    server_down,
)

PG_OUTAGE_SECONDS = 20
REDIS_OUTAGE_SECONDS = 30
TARGET_RECOVERY_SECONDS = 60.0
CLIENTS = 3


def _under_load(plane, fault) -> tuple[Counter, int, float]:
    """Runs fault() under load; returns statuses seen, 503s in the wrong format, seconds to normal."""
    answers: list = []
    stop = threading.Event()
    threads = [threading.Thread(target=load, args=(plane.browser, stop, answers)) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(2)
        fault()
        ended = time.monotonic()
        plane.wait(lambda: all_normal(plane.browser), timeout=180, what="normal answers")
        recovery = time.monotonic() - ended
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    statuses = Counter(status for _, _, _, status, _, _ in answers)
    malformed = sum(
        1
        for _, path, htmx, status, headers, body in answers
        if status == 503 and not answer_is_a_proper_503(path, htmx, headers, body)
    )
    return statuses, malformed, recovery


def _figures(label: str, statuses: Counter, malformed: int, recovery: float) -> list[Figure]:
    counts = ", ".join(f"{status or 'no answer'}: {n}" for status, n in sorted(statuses.items()))
    return [
        Figure(
            f"{label}: seconds until pages and API answer normally",
            f"{recovery:.1f} s",
            f"≤ {TARGET_RECOVERY_SECONDS:.0f} s",
            passed=recovery <= TARGET_RECOVERY_SECONDS,
        ),
        Figure(
            f"{label}: answers 500 (of {sum(statuses.values())})",
            str(statuses.get(500, 0)),
            "0",
            passed=statuses.get(500, 0) == 0,
        ),
        Figure(f"{label}: answers by status", counts, "only 200 and 503", passed=set(statuses) <= {200, 503}),
        Figure(f"{label}: 503s not in their door's format", str(malformed), "0", passed=malformed == 0),
    ]


def run() -> BenchResult:
    from celery import Celery

    var = settings.BASE_DIR / "var" / "bench" / "faults-outage"
    shutil.rmtree(var, ignore_errors=True)
    var.mkdir(parents=True)
    plane = control_plane_start(var, var / "run.log")
    figures: list[Figure] = []
    try:
        pg_port = int(plane.env["PERFPILOT_EMBEDDED_PG_PORT"])
        redis_port = int(plane.env["PERFPILOT_EMBEDDED_REDIS_PORT"])

        def postgres_stopped():
            with server_down(plane.postgres(), pg_port):
                time.sleep(PG_OUTAGE_SECONDS)

        since = plane.log_size()
        figures += _figures(f"PostgreSQL stopped {PG_OUTAGE_SECONDS} s", *_under_load(plane, postgres_stopped))
        pg_tracebacks = plane.output(since).count("Traceback")

        # Sent without a result backend: a result subscription open through the outage would break
        # in this client (not in the worker); results are read after it by a fresh client.
        sender = Celery("bench", broker=plane.redis_url())
        reader = Celery("bench-results", backend=plane.redis_url())
        workers = plane.worker_pids()
        queued = []

        def redis_stopped():
            queued.extend(sender.send_task("core.tasks.ping_task", args=[f"q{n}"], queue="default") for n in range(20))
            with server_down(plane.redis(), redis_port):
                time.sleep(REDIS_OUTAGE_SECONDS)

        since = plane.log_size()
        statuses, malformed, recovery = _under_load(plane, redis_stopped)
        figures += _figures(f"Redis stopped {REDIS_OUTAGE_SECONDS} s", statuses, malformed, recovery)
        back = time.monotonic()
        consumed = [reader.AsyncResult(result.id).get(timeout=120)["payload"] for result in queued]
        after = sender.send_task("core.tasks.ping_task", args=["after"], queue="default")
        consumed.append(reader.AsyncResult(after.id).get(timeout=120)["payload"])
        consuming = time.monotonic() - back + recovery
        same_worker = plane.worker_pids() == workers
        figures.append(
            Figure(
                f"Redis stopped {REDIS_OUTAGE_SECONDS} s: seconds until the 20 queued tasks and a new one ran",
                f"{consuming:.1f} s",
                f"≤ {TARGET_RECOVERY_SECONDS:.0f} s",
                passed=consuming <= TARGET_RECOVERY_SECONDS and len(consumed) == 21,
            )
        )
        figures.append(
            Figure(
                "Redis stopped: the same worker process afterwards",
                "yes" if same_worker else "no (restarted)",
                "yes",
                passed=same_worker,
            )
        )
        redis_tracebacks = plane.output(since).count("Traceback")
        sender.close()
        reader.close()

        postgres, redis_server = plane.postgres(), plane.redis()
        killed = time.monotonic()
        os.kill(pid_of(postgres.data / "postmaster.pid"), signal.SIGKILL)
        os.kill(pid_of(redis_server.pidfile), signal.SIGKILL)
        plane.wait(plane.ready, timeout=180, what="readyz after SIGKILL")
        ready = time.monotonic() - killed
        figures.append(
            Figure(
                "PostgreSQL and Redis killed (SIGKILL): seconds until /readyz is green",
                f"{ready:.1f} s",
                f"≤ {TARGET_RECOVERY_SECONDS:.0f} s",
                passed=ready <= TARGET_RECOVERY_SECONDS,
            )
        )
        figures.append(
            Figure(
                "Tracebacks in the log during the PostgreSQL and Redis outages",
                str(pg_tracebacks + redis_tracebacks),
                "0",
                passed=pg_tracebacks + redis_tracebacks == 0,
            )
        )
    finally:
        control_plane_stop(plane)
    return BenchResult(
        name="faults_outage",
        title="PostgreSQL and Redis outages under `make run`: recovery and 500s",
        setup=(
            f"A `make run` control plane (1 web worker with 4 threads, 1 Celery worker) on its own data dir; "
            f"{CLIENTS} signed-in clients request in turn `/`, `/monitoring/`, `/optimizer/`, `/alerts/`, the "
            "Overview's health fragment (HTMX), `/api/v1/targets`, `/api/v1/performance/status` and `/metrics`, "
            "without pause. Each server is stopped with its port held (the supervisor's restarts fail and back "
            "off until the port is free), then started by the supervisor; recovery is timed from the end of the "
            "fault until every one of those answers 200."
        ),
        figures=tuple(figures),
        notes=(
            "The recovery time includes the supervisor's back-off: its attempts during the fault fail, and the "
            "next one comes up to 16 s after the port is free (1, 2, 4, 8, 16 s, then every 30 s). A server that "
            "simply dies is started within the 2 s check interval (the SIGKILL row). Each process logs one "
            f"line per component and {OUTAGE_LOG_INTERVAL_SECONDS:.0f} s instead of tracebacks."
        ),
    )
