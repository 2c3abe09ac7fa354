"""Redis locks with an owner and a deadline: the one way Perfpilot keeps two workers off the same thing.

A lock's value names its owner (host, pid, the Celery task if any, a caller's label) plus a random
part, so only the owner can extend or release it, and anyone can read who holds a key with
`lock_holder()`. While the `with` block runs, a keeper thread resets the lock to its full TTL every
third of it, so a short TTL covers long work and the lock of a dead owner frees itself within one TTL.

    lock = lock_acquire(lock_key("collect", target.id))
    if lock is None:
        return skipped  # another owner holds it
    with lock:
        ...

Extending and releasing run redis-py's own Lock scripts (compare the value, then PEXPIRE or DEL).
redis-py's Lock class itself is not used: it takes, extends and releases one key per round trip,
while the scaling tick takes the locks of all its services in one (`locks_acquire`).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType

import psutil
import redis
from celery import current_task
from redis.lock import Lock as RedisLock

from core.redis_client import get_redis

logger = logging.getLogger(__name__)

KEY_PREFIX = "perfpilot:lock"
DEFAULT_TTL_SECONDS = 60.0
WAIT_STEP_SECONDS = 0.1


def lock_key(scope: str, ident: object | None = None) -> str:
    """The one naming scheme: perfpilot:lock:<scope>[:<id>], e.g. perfpilot:lock:collect:7."""
    return f"{KEY_PREFIX}:{scope}" if ident is None else f"{KEY_PREFIX}:{scope}:{ident}"


@dataclass(frozen=True)
class LockHolder:
    """Who holds a lock, as its value says, and how long it lasts unless its owner extends it."""

    key: str
    host: str
    pid: int
    task_id: str
    label: str
    ttl_seconds: float | None  # None: the key has no expiry (not written by this module)

    def __str__(self) -> str:
        parts = [self.label] if self.label else []
        parts.append(f"pid {self.pid} on {self.host}")
        if self.task_id:
            parts.append(f"task {self.task_id}")
        return ", ".join(parts)


class Lock:
    """Locks held under one owner value: one key, or several taken at once (a scaling tick's services).

    As a context manager it keeps `keys` alive while the block runs and releases them on exit, also
    when the block raises. A key lost meanwhile (it expired, perhaps another owner took it) is logged
    and dropped, never extended or released: the scripts compare the value first.
    """

    def __init__(self, *, client: redis.Redis, keys: Sequence[str], value: str, ttl: float) -> None:
        self._client = client
        self.keys: tuple[str, ...] = tuple(keys)
        self.value = value
        self.ttl = ttl
        self._stop = threading.Event()
        self._keeper: threading.Thread | None = None

    def extend(self) -> tuple[str, ...]:
        """Reset every key still ours to the full TTL; returns the keys that were lost."""
        kept = self._each_key(RedisLock.LUA_REACQUIRE_SCRIPT, int(self.ttl * 1000))
        lost = tuple(key for key, ok in zip(self.keys, kept, strict=True) if not ok)
        if lost:
            logger.warning("locks lost while held (expired, perhaps taken by another owner): %s", ", ".join(lost))
            self.keys = tuple(key for key, ok in zip(self.keys, kept, strict=True) if ok)
        return lost

    def release(self) -> None:
        """Delete every key still ours; keys another owner holds by now are left alone."""
        released = self._each_key(RedisLock.LUA_RELEASE_SCRIPT)
        lost = [key for key, ok in zip(self.keys, released, strict=True) if not ok]
        if lost:
            logger.warning("locks expired before release: %s", ", ".join(lost))
        self.keys = ()

    def _each_key(self, script_text: str, *args: object) -> list[bool]:
        """Run one of redis-py's Lock scripts on every key, in one round trip."""
        if not self.keys:
            return []
        script = self._client.register_script(script_text)
        if len(self.keys) == 1:  # a pipeline would first ask whether the script is loaded: one more round trip
            return [bool(script(keys=list(self.keys), args=[self.value, *args], client=self._client))]
        pipe = self._client.pipeline(transaction=False)
        for key in self.keys:
            script(keys=[key], args=[self.value, *args], client=pipe)
        return [bool(result) for result in pipe.execute()]

    def _keep(self) -> None:
        while self.keys and not self._stop.wait(self.ttl / 3):
            try:
                self.extend()
            except redis.RedisError as exc:  # the next try comes before the TTL runs out
                logger.warning("extending locks %s failed: %s", ", ".join(self.keys), exc)

    def __enter__(self) -> Lock:
        if self.keys:
            self._keeper = threading.Thread(target=self._keep, name=f"lock keeper {self.keys[0]}", daemon=True)
            self._keeper.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._keeper is not None:
            self._keeper.join()
        try:
            self.release()
        except redis.RedisError as error:  # never hide the block's own outcome behind this; they expire anyway
            logger.warning("releasing locks %s failed (they expire within %s s): %s", self.keys, self.ttl, error)


def owner_identity() -> dict:
    """This process as an owner: host, pid, the pid's start time (tells a reused pid apart) and the
    Celery task it runs, if any. Lock values and optimizer runs record it."""
    try:
        started = psutil.Process(os.getpid()).create_time()
    except psutil.Error:
        started = None
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started": started,
        "task_id": (current_task.request.id or "") if current_task else "",
    }


def owner_gone(owner: dict) -> bool:
    """True only when owner is provably dead: a process of this host whose pid no longer exists, or
    now belongs to a later process. An owner on another host is never provably gone from here."""
    if not owner or owner.get("host") != socket.gethostname():
        return False
    try:
        pid = int(owner.get("pid") or 0)
    except (TypeError, ValueError):
        return False
    if pid <= 0:
        return False
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return True
        started = owner.get("started")
        return started is not None and abs(process.create_time() - float(started)) > 1
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:  # it exists but cannot be inspected: not provably gone
        return False


def _owner_value(label: str) -> str:
    return json.dumps(
        {
            **owner_identity(),
            "label": label,
            "nonce": secrets.token_hex(8),  # two acquisitions by one owner never share a value
        }
    )


def locks_acquire(keys: Sequence[str], *, ttl: float = DEFAULT_TTL_SECONDS, label: str = "") -> Lock:
    """Take whichever of keys are free, in one round trip; the Lock holds those (perhaps none)."""
    client = get_redis()
    value = _owner_value(label)
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.set(key, value, nx=True, px=int(ttl * 1000))
    taken = pipe.execute()
    return Lock(client=client, keys=[key for key, ok in zip(keys, taken, strict=True) if ok], value=value, ttl=ttl)


def lock_acquire(key: str, *, ttl: float = DEFAULT_TTL_SECONDS, label: str = "", wait: float = 0) -> Lock | None:
    """Take key if it is free, or once it frees within `wait` seconds; None while another owner holds it."""
    deadline = time.monotonic() + wait
    while True:
        lock = locks_acquire([key], ttl=ttl, label=label)
        if lock.keys:
            return lock
        if time.monotonic() + WAIT_STEP_SECONDS > deadline:
            return None
        time.sleep(WAIT_STEP_SECONDS)


def lock_break_if_owner_gone(key: str) -> LockHolder | None:
    """Free key when its owner is provably dead (`owner_gone`), rather than wait out its TTL.
    Returns the dead holder freed, or None (free already, or held by a live or unknown owner)."""
    client = get_redis()
    value = client.get(key)
    if value is None:
        return None
    try:
        owner = json.loads(value)
    except ValueError:
        return None
    if not isinstance(owner, dict) or not owner_gone(owner):
        return None
    holder = lock_holder(key)
    # Compare-and-delete: if the key changed hands meanwhile, the new owner keeps it.
    script = client.register_script(RedisLock.LUA_RELEASE_SCRIPT)
    if not script(keys=[key], args=[value], client=client):
        return None
    logger.warning("freed lock %s of a dead owner (%s)", key, holder)
    return holder


def lock_holder(key: str) -> LockHolder | None:
    """Who holds key right now, or None when it is free."""
    pipe = get_redis().pipeline()  # MULTI: the value and the TTL of the same moment
    pipe.get(key)
    pipe.pttl(key)
    value, ttl_ms = pipe.execute()
    if value is None:
        return None
    try:
        owner = json.loads(value)
    except ValueError:
        owner = None
    if not isinstance(owner, dict):  # a value written by something else: show it as the label
        owner = {"label": value}
    return LockHolder(
        key=key,
        host=str(owner.get("host", "")),
        pid=int(owner.get("pid", 0)),
        task_id=str(owner.get("task_id", "")),
        label=str(owner.get("label", "")),
        ttl_seconds=ttl_ms / 1000 if ttl_ms >= 0 else None,
    )
