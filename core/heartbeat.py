"""Heartbeats of the Celery worker, beat and the collection schedulers, kept in Redis with a TTL.

The worker writes from a thread in its main process; beat and the schedulers write from their
loops, so their heartbeat proves that schedules are being ticked, not only that the process exists.
Worker processes also publish a few figures of their own (kept connections), one key per process.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass

from django.conf import settings

from core.outages import failure_log
from core.redis_client import get_redis

logger = logging.getLogger(__name__)

WORKER_KEY_PREFIX = "perfpilot:heartbeat:worker:"
BEAT_KEY = "perfpilot:heartbeat:beat"
SCHEDULER_KEY_PREFIX = "perfpilot:heartbeat:scheduler:"
PROCESS_STATS_PREFIX = "perfpilot:heartbeat:process:"


@dataclass(frozen=True)
class Heartbeat:
    name: str
    seen_at: float
    pid: int

    @property
    def age_seconds(self) -> float:
        return max(0.0, time.time() - self.seen_at)


def _ttl() -> int:
    return int(settings.HEARTBEAT_STALE_SECONDS * 2) + 1


def _write(key: str, name: str) -> None:
    payload = json.dumps({"name": name, "seen_at": time.time(), "pid": os.getpid()})
    get_redis().set(key, payload, ex=_ttl())


def worker_heartbeat_write(hostname: str) -> None:
    _write(WORKER_KEY_PREFIX + hostname, hostname)


def worker_heartbeat_clear(hostname: str) -> None:
    get_redis().delete(WORKER_KEY_PREFIX + hostname)


def beat_heartbeat_write() -> None:
    _write(BEAT_KEY, "beat")


def scheduler_heartbeat_write(name: str) -> None:
    _write(SCHEDULER_KEY_PREFIX + name, name)


def scheduler_heartbeat_clear(name: str) -> None:
    get_redis().delete(SCHEDULER_KEY_PREFIX + name)


def worker_process_stats_write(*, worker: str, pid: int, stats: dict, ttl_seconds: int) -> None:
    """Figures of one worker process (a pool child), kept for ttl_seconds after its last report."""
    payload = json.dumps({"worker": worker, "pid": pid, "seen_at": time.time(), **stats})
    get_redis().set(f"{PROCESS_STATS_PREFIX}{worker}:{pid}", payload, ex=ttl_seconds)


def worker_process_stats() -> list[dict]:
    """The figures every worker process reported (worker, pid, seen_at and its own keys)."""
    return [json.loads(raw) for raw in _scan_values(PROCESS_STATS_PREFIX)]


def _scan_values(prefix: str) -> list[str]:
    client = get_redis()
    keys = sorted(client.scan_iter(match=prefix + "*", count=100))
    return [raw for raw in client.mget(keys) if raw] if keys else []


def _parse(raw: str | None) -> Heartbeat | None:
    if not raw:
        return None
    data = json.loads(raw)
    return Heartbeat(name=data["name"], seen_at=float(data["seen_at"]), pid=int(data["pid"]))


def worker_heartbeats() -> list[Heartbeat]:
    return [_parse(raw) for raw in _scan_values(WORKER_KEY_PREFIX)]


def scheduler_heartbeats() -> list[Heartbeat]:
    return [_parse(raw) for raw in _scan_values(SCHEDULER_KEY_PREFIX)]


def beat_heartbeat() -> Heartbeat | None:
    return _parse(get_redis().get(BEAT_KEY))


class HeartbeatThread(threading.Thread):
    """Writes the worker's heartbeat every HEARTBEAT_INTERVAL_SECONDS until stopped."""

    def __init__(self, hostname: str) -> None:
        super().__init__(name="perfpilot-heartbeat", daemon=True)
        self.hostname = hostname
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                worker_heartbeat_write(self.hostname)
            except Exception as exc:  # Redis down: keep trying; readiness shows the outage
                failure_log(logger, "worker heartbeat not written", exc)
            self.stopped.wait(settings.HEARTBEAT_INTERVAL_SECONDS)

    def stop(self) -> None:
        self.stopped.set()
