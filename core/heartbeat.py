"""Heartbeats of the Celery worker and beat, kept in Redis with a TTL.

The worker writes from a thread in its main process; beat writes from its scheduler loop, so a
beat heartbeat proves that the schedule is being ticked, not only that the process exists.
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


def _parse(raw: str | None) -> Heartbeat | None:
    if not raw:
        return None
    data = json.loads(raw)
    return Heartbeat(name=data["name"], seen_at=float(data["seen_at"]), pid=int(data["pid"]))


def worker_heartbeats() -> list[Heartbeat]:
    client = get_redis()
    keys = sorted(client.scan_iter(match=WORKER_KEY_PREFIX + "*", count=100))
    if not keys:
        return []
    beats = [_parse(raw) for raw in client.mget(keys)]
    return [beat for beat in beats if beat is not None]


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
