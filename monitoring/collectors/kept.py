"""Connections kept between collections of a target, so that a collection does not pay for connecting.

Connecting costs more CPU than the reading it serves: a PostgreSQL login with SCRAM derives its
key for ~3 ms, a Redis connection sends HELLO and CLIENT SETINFO before the first command, and a
Celery app with its kombu connection takes ~10 ms to set up. Every 10 s, for every target, in
every worker process, that adds up.

A connection serves one collection at a time: the collection takes it off the shelf, and puts it
back only when it went well. After a failure it is closed, so the next collection connects afresh.
Each target has one slot per process; a connection made for another URL or timeout (the target
was edited) is closed instead of used, and one left unused for IDLE_SECONDS (its target was
deleted or paused) is closed at the next collection of any target.

The shelves of all collectors together keep at most COLLECTOR_MAX_CONNECTIONS connections per
process: past that, the least recently used one is closed (it connects afresh when its target's
turn comes), so a worker with thousands of targets holds a bounded number of sockets and server
sessions. `kept_connection_count()` is the number kept now; worker processes report it (see
connections_report) for /metrics and the worker's status.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

from django.conf import settings

from core.heartbeat import worker_process_stats_write
from core.outages import failure_log

logger = logging.getLogger(__name__)

C = TypeVar("C")
IDLE_SECONDS = 300.0

_shelves: weakref.WeakSet[KeptConnections] = weakref.WeakSet()  # every shelf of this process, for the bound
_bound_lock = threading.Lock()


class KeptConnections(Generic[C]):
    def __init__(self, close: Callable[[C], None], *, idle_seconds: float = IDLE_SECONDS) -> None:
        self._close = close
        self._idle_seconds = idle_seconds
        self._shelf: dict[Hashable, tuple[Hashable, C, float]] = {}  # slot: (fingerprint, connection, put back at)
        self._lock = threading.Lock()
        _shelves.add(self)

    def take(self, slot: Hashable, fingerprint: Hashable) -> C | None:
        """The connection kept in this slot for this fingerprint, now the caller's; None when there is none."""
        with self._lock:
            kept = self._shelf.pop(slot, None)
        if kept is None:
            return None
        kept_fingerprint, connection, _ = kept
        if kept_fingerprint != fingerprint:
            self.discard(connection)
            return None
        return connection

    def put_back(self, slot: Hashable, fingerprint: Hashable, connection: C) -> None:
        """Keep the connection for the slot's next collection (closing one put back meanwhile)."""
        now = time.monotonic()
        with self._lock:
            # Popped first so the slot moves to the end: the shelf stays in order of last use.
            replaced = self._shelf.pop(slot, None)
            self._shelf[slot] = (fingerprint, connection, now)
            idle = [key for key, (_, _, at) in self._shelf.items() if now - at > self._idle_seconds]
            closing = [self._shelf.pop(key)[1] for key in idle]
        if replaced is not None and replaced[1] is not connection:
            closing.append(replaced[1])
        for unused in closing:
            self.discard(unused)
        _enforce_bound()

    @contextmanager
    def lent(self, slot: Hashable, fingerprint: Hashable, connection: C) -> Iterator[C]:
        """Use the connection for one collection: put back when the block succeeds, closed when it raises."""
        try:
            yield connection
        except BaseException:
            self.discard(connection)
            raise
        self.put_back(slot, fingerprint, connection)

    def discard(self, connection: C) -> None:
        try:
            self._close(connection)
        except Exception:  # already broken: there is nothing left to release
            logger.debug("closing a kept connection failed", exc_info=True)

    def close_all(self) -> None:
        with self._lock:
            kept = list(self._shelf.values())
            self._shelf.clear()
        for _, connection, _ in kept:
            self.discard(connection)

    def __len__(self) -> int:
        return len(self._shelf)

    def _pop_oldest(self) -> tuple[float, C] | None:
        with self._lock:
            if not self._shelf:
                return None
            slot = next(iter(self._shelf))
            _, connection, at = self._shelf.pop(slot)
        return at, connection

    def _oldest_at(self) -> float | None:
        with self._lock:
            return next(iter(self._shelf.values()))[2] if self._shelf else None


def kept_connection_count() -> int:
    """Connections kept in this process, over every collector."""
    return sum(len(shelf) for shelf in list(_shelves))


def _enforce_bound() -> None:
    """Close the least recently used connections, over all shelves, until at most the bound are kept."""
    closing: list[tuple[KeptConnections, object]] = []
    with _bound_lock:
        excess = kept_connection_count() - settings.COLLECTOR_MAX_CONNECTIONS
        for _ in range(max(0, excess)):
            aged = [(at, shelf) for shelf in list(_shelves) if (at := shelf._oldest_at()) is not None]
            if not aged:
                break
            shelf = min(aged, key=lambda pair: pair[0])[1]
            popped = shelf._pop_oldest()
            if popped is not None:
                closing.append((shelf, popped[1]))
    for shelf, connection in closing:
        shelf.discard(connection)


_last_report: tuple[int, float] = (-1, 0.0)


def connections_report(*, worker: str) -> None:
    """Publish this process's count of kept connections (for /metrics and the worker's status) when it
    changed or its last report is getting old; a Redis outage only delays the next report."""
    global _last_report
    count, now = kept_connection_count(), time.monotonic()
    last_count, last_at = _last_report
    if count == last_count and now - last_at < settings.HEARTBEAT_INTERVAL_SECONDS:
        return
    try:
        # Kept long enough to outlive a quiet spell: idle connections are closed only at a later collection.
        worker_process_stats_write(
            worker=worker, pid=os.getpid(), stats={"collector_connections": count}, ttl_seconds=int(IDLE_SECONDS) + 60
        )
    except Exception as exc:
        failure_log(logger, "kept connection count not reported", exc)
        return
    _last_report = (count, now)
