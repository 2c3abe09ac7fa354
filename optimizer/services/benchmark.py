"""A short read/write latency benchmark on a target, recorded in the optimization log.

PostgreSQL: a temporary table (gone with the session) takes `operations` single-row inserts, then as
many primary-key reads. Redis: SET and GET of keys under a prefix of our own, deleted afterwards.
Every statement is bounded by the optimizer's timeouts; the run is logged with its latencies.
"""

from __future__ import annotations

import statistics
import time
import uuid

import redis
from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone

from core.errors import InvalidInput
from core.locks import owner_identity
from monitoring.models import Target
from optimizer.models import OptimizationRun
from optimizer.services.liveness import RunHeartbeat
from optimizer.services.runs import audit_run
from optimizer.services.sessions import open_session
from optimizer.tuners.base import TunerError

MAX_OPERATIONS = 2000


def _percentile(values: list[float], q: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


def _timed(calls) -> list[float]:
    latencies = []
    for call in calls:
        started = time.perf_counter()
        call()
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


def benchmark_run(*, target: Target, operations: int, actor: AbstractBaseUser | None, trigger: str) -> OptimizationRun:
    if not 1 <= operations <= MAX_OPERATIONS:
        raise InvalidInput(f"operations must be between 1 and {MAX_OPERATIONS}.", field="operations")
    if target.kind not in (Target.Kind.POSTGRES, Target.Kind.REDIS):
        raise InvalidInput(f"{target.name} is neither PostgreSQL nor Redis; nothing to benchmark.", field="target")
    if not target.enabled:
        raise InvalidInput(f"{target.name} is disabled: Perfpilot does not connect to it.", field="target")
    run = OptimizationRun.objects.create(
        tuner="benchmark",
        action=OptimizationRun.Action.BENCHMARK,
        target=target,
        target_name=target.name,
        trigger=trigger,
        started_by=actor if actor is not None and actor.is_authenticated else None,
        started_by_name=actor.get_username() if actor is not None and actor.is_authenticated else "system",
        params={"operations": operations},
        status=OptimizationRun.Status.RUNNING,
        started_at=timezone.now(),
        owner=owner_identity(),  # the reaper ends it if this process dies (optimizer.services.liveness)
        heartbeat_at=timezone.now(),
    )
    started = time.perf_counter()
    try:
        with RunHeartbeat(run.id), open_session(target=target, dry_run=False) as session:
            writes, reads = _postgres(session, operations) if session.pg is not None else _redis(session, operations)
    except (TunerError, redis.RedisError) as exc:
        run.status, run.error = OptimizationRun.Status.FAILED, str(exc)
    else:
        run.status = OptimizationRun.Status.SUCCEEDED
        run.evidence_after = {
            "operations": operations,
            "read_p50_ms": round(_percentile(reads, 0.5), 4),
            "read_p95_ms": round(_percentile(reads, 0.95), 4),
            "write_p50_ms": round(_percentile(writes, 0.5), 4),
            "write_p95_ms": round(_percentile(writes, 0.95), 4),
        }
        run.summary = (
            f"{operations} writes p50 {run.evidence_after['write_p50_ms']:.3f} ms, "
            f"reads p50 {run.evidence_after['read_p50_ms']:.3f} ms"
        )
    run.finished_at = timezone.now()
    run.duration_ms = round((time.perf_counter() - started) * 1000, 2)
    run.save()
    audit_run(run)
    return run


def _postgres(session, operations: int) -> tuple[list[float], list[float]]:
    session.query("CREATE TEMPORARY TABLE pp_benchmark (id int PRIMARY KEY, payload text)")
    try:
        writes = _timed(
            (lambda i=i: session.query("INSERT INTO pp_benchmark VALUES (%s, md5(%s::text))", [i, i]))
            for i in range(operations)
        )
        reads = _timed(
            (lambda i=i: session.query("SELECT payload FROM pp_benchmark WHERE id = %s", [i]))
            for i in range(operations)
        )
    finally:
        session.query("DROP TABLE IF EXISTS pp_benchmark")
    return writes, reads


def _redis(session, operations: int) -> tuple[list[float], list[float]]:
    prefix = f"perfpilot:benchmark:{uuid.uuid4().hex}:"
    client = session.redis
    try:
        writes = _timed((lambda i=i: client.set(f"{prefix}{i}", "x" * 64, ex=300)) for i in range(operations))
        reads = _timed((lambda i=i: client.get(f"{prefix}{i}")) for i in range(operations))
    finally:
        keys = [f"{prefix}{i}" for i in range(operations)]
        for start in range(0, len(keys), 500):
            client.delete(*keys[start : start + 500])
    return writes, reads
