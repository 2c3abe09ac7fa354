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
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

logger = logging.getLogger(__name__)

C = TypeVar("C")
IDLE_SECONDS = 300.0


class KeptConnections(Generic[C]):
    def __init__(self, close: Callable[[C], None], *, idle_seconds: float = IDLE_SECONDS) -> None:
        self._close = close
        self._idle_seconds = idle_seconds
        self._shelf: dict[Hashable, tuple[Hashable, C, float]] = {}  # slot: (fingerprint, connection, put back at)
        self._lock = threading.Lock()

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
            replaced = self._shelf.get(slot)
            self._shelf[slot] = (fingerprint, connection, now)
            idle = [key for key, (_, _, at) in self._shelf.items() if now - at > self._idle_seconds]
            closing = [self._shelf.pop(key)[1] for key in idle]
        if replaced is not None and replaced[1] is not connection:
            closing.append(replaced[1])
        for unused in closing:
            self.discard(unused)

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
