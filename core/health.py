"""Health of the control plane itself: its database, its Redis, its broker when that is not the
Redis (RabbitMQ), the Celery worker, beat and the schedulers."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection, transaction

from core import __version__
from core.broker import broker_component, broker_probe
from core.heartbeat import beat_heartbeat, scheduler_heartbeats, worker_heartbeats, worker_process_stats
from core.redis_client import get_redis

PROCESS_STARTED_AT = time.time()
COMPONENTS = ("database", "redis", "broker", "worker", "beat", "scheduler")
HEARTBEAT_COMPONENTS = ("worker", "beat", "scheduler")
STATUS_API_MAX_AGE_SECONDS = 1.0


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str
    latency_ms: float
    facts: dict = field(default_factory=dict)


def _timed(name: str, probe) -> CheckResult:
    started = time.perf_counter()
    try:
        ok, detail, facts = probe()
    except Exception as exc:  # a check reports any failure as data; it never raises
        ok, detail, facts = False, f"{type(exc).__name__}: {exc}".strip(), {}
    return CheckResult(name, ok, detail, round((time.perf_counter() - started) * 1000, 2), facts)


def _probe_database():
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL statement_timeout = %s", [int(settings.HEALTH_CHECK_TIMEOUT_SECONDS * 1000)])
        cursor.execute("SELECT current_setting('server_version'), pg_database_size(current_database())")
        version, size = cursor.fetchone()
    return True, f"PostgreSQL {version}", {"version": version, "size_bytes": int(size)}


def _probe_redis():
    info = get_redis().info(section="server")
    memory = get_redis().info(section="memory")
    version = info.get("redis_version", "?")
    return True, f"Redis {version}", {"version": version, "used_memory_bytes": int(memory.get("used_memory", 0))}


def _probe_many(what: str, beats: list, facts: dict, *, up: str):
    """A component of which any number may run: up while one of them has a fresh heartbeat."""
    fresh = [b for b in beats if b.age_seconds <= settings.HEARTBEAT_STALE_SECONDS]
    if not beats:
        return False, f"no {what} heartbeat", facts
    if not fresh:
        oldest = min(b.age_seconds for b in beats)
        return False, f"last {what} heartbeat {oldest:.0f} s ago", facts
    return True, f"{len(fresh)} {what}{'s' if len(fresh) != 1 else ''} {up}", facts


def _probe_worker():
    beats = worker_heartbeats()
    connections: dict[str, int] = {}
    for process in worker_process_stats():
        name = process["worker"]
        connections[name] = connections.get(name, 0) + int(process.get("collector_connections", 0))
    workers = [
        {"name": b.name, "age_seconds": round(b.age_seconds, 1), "collector_connections": connections.get(b.name, 0)}
        for b in beats
    ]
    ok, detail, facts = _probe_many("worker", beats, {"workers": workers}, up="online")
    kept = sum(w["collector_connections"] for w in workers)
    if kept:
        detail += f", {kept} target connection{'s' if kept != 1 else ''} kept"
    return ok, detail, facts


def _probe_beat():
    beat = beat_heartbeat()
    if beat is None:
        return False, "no beat heartbeat", {}
    age = beat.age_seconds
    facts = {"age_seconds": round(age, 1)}
    if age > settings.HEARTBEAT_STALE_SECONDS:
        return False, f"last beat heartbeat {age:.0f} s ago", facts
    return True, f"ticked {age:.0f} s ago", facts


def _probe_scheduler():
    beats = scheduler_heartbeats()
    facts = {"schedulers": [{"name": b.name, "age_seconds": round(b.age_seconds, 1)} for b in beats]}
    return _probe_many("scheduler", beats, facts, up="running")


_PROBES = {
    "database": _probe_database,
    "redis": _probe_redis,
    "broker": broker_probe,
    "worker": _probe_worker,
    "beat": _probe_beat,
    "scheduler": _probe_scheduler,
}


def check_all() -> list[CheckResult]:
    results = []
    redis_ok = True
    for name in COMPONENTS:
        if name == "broker" and broker_component() != "broker":
            continue  # the broker is the Redis checked above
        if name in HEARTBEAT_COMPONENTS and not redis_ok:
            # Heartbeats live in Redis: without it their state is unknown, so say that plainly.
            results.append(CheckResult(name, False, "unknown: Redis is unreachable", 0.0))
            continue
        result = _timed(name, _PROBES[name])
        if name == "redis":
            redis_ok = result.ok
        results.append(result)
    return results


@dataclass(frozen=True)
class ControlPlaneStatus:
    version: str
    uptime_seconds: float
    healthy: bool
    checks: list[CheckResult]

    @property
    def failed(self) -> list[str]:
        return [c.name for c in self.checks if not c.ok]


def control_plane_status(*, max_age_seconds: float = 0.0) -> ControlPlaneStatus:
    """Run every check, or, with max_age_seconds, reuse this process's last result that young.

    Status endpoints get polled hard by monitors and load balancers; one set of probes per
    second per web process answers them all, instead of four round trips per request. When the
    result goes stale, one thread probes again while the others keep answering with the stale
    result instead of queueing behind it; only the very first call waits.
    """
    global _last_status
    if max_age_seconds <= 0:
        return _status_now()
    last = _last_status
    if last is not None and time.monotonic() - last[0] < max_age_seconds:
        return last[1]
    if not _last_status_lock.acquire(blocking=last is None):
        return last[1]  # another thread is probing right now
    try:
        last = _last_status
        if last is not None and time.monotonic() - last[0] < max_age_seconds:
            return last[1]
        status = _status_now()
        _last_status = (time.monotonic(), status)
        return status
    finally:
        _last_status_lock.release()


def _status_now() -> ControlPlaneStatus:
    checks = check_all()
    return ControlPlaneStatus(
        version=__version__,
        uptime_seconds=round(time.time() - PROCESS_STARTED_AT, 1),
        healthy=all(c.ok for c in checks),
        checks=checks,
    )


_last_status: tuple[float, ControlPlaneStatus] | None = None
_last_status_lock = threading.Lock()


def status_cache_clear() -> None:
    """Forget the remembered status (tests, and anything that must see a change at once)."""
    global _last_status
    _last_status = None
