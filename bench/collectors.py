"""`collectors`: CPU used by one full collection cycle of host, PostgreSQL, Redis and Celery.

Runs the real collectors (monitoring.services.collection.collect_target, storage included)
against the bench's own embedded PostgreSQL and Redis and its Celery broker, and measures this
process's CPU time (time.process_time: user + system of the collecting process, what a worker
pays), not wall time: the Celery collector listens for events for a window, which costs time but
hardly any CPU. Baseline, in the same run: the CPU of the cheapest possible visit to the same
services, one `SELECT 1`, one Redis PING and one psutil call per cycle.
"""

from __future__ import annotations

import statistics
import time

import psutil
from django.conf import settings
from django.db import connection

from bench import BenchResult, Figure, percentile
from config.redis_client import get_redis
from monitoring.models import Target
from monitoring.services.collection import collect_target
from monitoring.services.targets import targets_register_builtin

CYCLES = 30
TARGET_MS = 50.0


def _cpu(call) -> float:
    started = time.process_time()
    call()
    return time.process_time() - started


def run() -> BenchResult:
    targets_register_builtin()
    kinds = ("host", "postgres", "redis", "celery")
    targets = [Target.objects.get(builtin=True, kind=kind) for kind in kinds]
    for target in targets:
        # Celery's event window scales with the timeout; keep the bench's cycle short.
        target.options = {**target.options, "event_window_seconds": 0.5}
        target.save(update_fields=["options"])

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
            f"{CYCLES} cycles of the four built-in targets (host, PostgreSQL, Redis, Celery) after two warm-up "
            "cycles, each collection stored as in production. CPU time of the collecting process "
            "(`time.process_time`). Celery event window 0.5 s (wall time, not CPU)."
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
