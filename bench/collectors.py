"""`collectors`: CPU used by one full collection cycle of host, PostgreSQL, Redis and Celery.

Runs the real collectors (monitoring.services.collection.collect_target, storage included) with
their default options against the bench's own embedded PostgreSQL and Redis, and its Celery
broker with a real worker online, so the Celery collection holds its whole conversation:
inspect stats, active and reserved, and the event window. Measures this process's CPU time
(time.process_time: user + system of the collecting process, what a worker pays), not wall time:
the event window costs time but hardly any CPU. Baseline, in the same run: the CPU of the
cheapest possible visit to the same services, one `SELECT 1`, one Redis PING and one psutil call
per cycle.
"""

from __future__ import annotations

import statistics
import time

import psutil
from django.conf import settings
from django.db import connection

from bench import BenchResult, Figure, percentile
from bench.servers import celery_spawn
from core.redis_client import get_redis
from core.signals import freeze_startup_objects
from core.supervisor import stop_process_group
from monitoring.collectors.base import collector_for
from monitoring.models import Target
from monitoring.services.collection import collect_target
from monitoring.services.targets import targets_register_builtin

CYCLES = 40
TARGET_MS = 50.0
WORKER = "bench-collectors"


def _cpu(call) -> float:
    started = time.process_time()
    call()
    return time.process_time() - started


def run() -> BenchResult:
    targets_register_builtin()
    kinds = ("host", "postgres", "redis", "celery")
    targets = [Target.objects.get(builtin=True, kind=kind) for kind in kinds]
    for target in targets:  # earlier versions of this benchmark shortened the Celery event window
        if target.options.pop("event_window_seconds", None) is not None:
            target.save(update_fields=["options"])
    # An idle worker on a queue of its own: it answers the control commands and sends heartbeats.
    worker = celery_spawn(
        ["worker", "--loglevel", "WARNING", "--concurrency", "1", "--queues", f"{WORKER}-idle",
         "--hostname", f"{WORKER}@%h", "--without-mingle", "--without-gossip"],
        "collectors-worker.log",
    )  # fmt: skip
    try:
        _wait_for_worker(targets[-1])
        return _measure(targets)
    finally:
        stop_process_group(worker)


def _wait_for_worker(celery_target: Target) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if collector_for(celery_target).test_connection().endswith("1 worker online"):
            return
        time.sleep(1)
    raise SystemExit("collectors benchmark: the Celery worker did not come online (var/bench/collectors-worker.log)")


def _measure(targets: list[Target]) -> BenchResult:
    def cycle() -> None:
        for target in targets:
            outcome = collect_target(target=target)
            if not outcome.ok:
                raise SystemExit(f"collectors benchmark: {target.name} failed: {outcome.error}")

    def baseline() -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        get_redis().ping()
        psutil.virtual_memory()

    freeze_startup_objects()  # as a worker's pool process does once it has started
    cycle()  # first cycle: series creation and counter baselines, outside the figures
    cycle()
    per_kind = {}
    for target in targets:
        per_kind[target.kind] = statistics.median(_cpu(lambda t=target: collect_target(target=t)) for _ in range(5))
    cycles = [_cpu(cycle) for _ in range(CYCLES)]
    baselines = [_cpu(baseline) for _ in range(CYCLES)]
    p50 = percentile(cycles, 0.5) * 1000
    p95 = percentile(cycles, 0.95) * 1000
    base = percentile(baselines, 0.5) * 1000
    return BenchResult(
        name="collectors",
        title="CPU of one full collection cycle",
        setup=(
            f"{CYCLES} cycles of the four built-in targets (host, PostgreSQL, Redis, Celery) with their default "
            "options, after two warm-up cycles, each collection stored as in production. One idle Celery "
            "worker is online, so each Celery collection asks it for its stats and its active and reserved "
            "tasks, and listens to its events for the default 2 s window (wall time, not CPU). "
            "CPU time of the collecting process (`time.process_time`), whose start-up objects are frozen out "
            "of garbage collection as in a worker's pool process (`core.signals.freeze_startup_objects`)."
        ),
        figures=(
            Figure(
                "Full cycle CPU, p50",
                f"{p50:.1f} ms",
                f"< {TARGET_MS:.0f} ms",
                f"{base:.2f} ms",
                f"{p50 / base:.0f}x" if base else "",
                p50 < TARGET_MS,
            ),
            Figure(
                "Full cycle CPU, p95",
                f"{p95:.1f} ms",
                f"< {TARGET_MS:.0f} ms",
                f"{base:.2f} ms",
                f"{p95 / base:.0f}x" if base else "",
                p95 < TARGET_MS,
            ),
            *(Figure(f"  {kind} alone (median)", f"{value * 1000:.1f} ms") for kind, value in per_kind.items()),
        ),
        notes=(
            "Baseline: one `SELECT 1`, one Redis PING and one psutil call per cycle, against database "
            f"{settings.DATABASES['default']['NAME']}."
        ),
    )
