"""Scheduling collections from the targets' own rows, so the cost grows with the work due.

Each enabled target has `next_due_at`, the start of its next interval (its slot). A scheduler
(`manage.py run_scheduler`; any number may run) claims the due rows in one transaction:

1. `SELECT … FOR UPDATE SKIP LOCKED`, oldest first, a bounded batch: two schedulers never claim
   the same row, and neither waits for the other;
2. moves each row on by whole intervals to the first slot after now: no drift, and after a pause
   (no scheduler ran) one collection, not a burst of the missed ones;
3. sends the collections (cheap kinds batched, one task per batch of a group; see below);
4. commits.

Sending happens inside the transaction, so a failure at any moment loses nothing and doubles
nothing: if the broker refuses, the claim rolls back and the slots stay due; if the scheduler dies
before sending, its rows are unlocked and the next scheduler claims them; if it dies after sending
but before commit, the next scheduler sends the same slots again, and the worker drops the copy:
it takes a slot on with one conditional UPDATE of `collected_slot` (`slot_claim`), which only the
first message of a (target, slot) wins.

Each collector group is its own queue: `collect` for the default group (so existing worker command
lines keep serving it), `collect.<group>` for the others; a worker near the monitored systems serves
one with `celery -A config worker -Q collect.<group>`.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

from celery import current_app
from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.utils import timezone

from core.heartbeat import scheduler_heartbeat_clear, scheduler_heartbeat_write
from core.outages import failure_log
from core.queueing import task_send
from monitoring.collectors.kept import connections_report
from monitoring.models import DEFAULT_GROUP, Target
from monitoring.services.collection import CollectionOutcome, collect_target

logger = logging.getLogger(__name__)

COLLECT_QUEUE = "collect"
CLAIM_BATCH = 500  # rows per claiming transaction; a scheduler claims again at once while more are due
# A scheduler claims once per tick whatever is due by then. Waking for each slot instead would cost a
# round of queries per collection when few targets are spread over the interval; a collection starts
# at most one tick after its slot, and the next slot stays on the interval's grid (no drift).
TICK_SECONDS = 1.0
# Collections that are mostly waiting on the network and cheap to run: batched and run on threads.
BATCHED_KINDS = frozenset({Target.Kind.PROMETHEUS, Target.Kind.REDIS, Target.Kind.CELERY})
COLLECT_TASK = "monitoring.tasks.collect_target_task"
COLLECT_BATCH_TASK = "monitoring.tasks.collect_batch_task"

_TARGET_TABLE = Target._meta.db_table
_CLAIM_SQL = (
    f'SELECT id, kind, "group", interval_seconds, next_due_at FROM {_TARGET_TABLE} '  # noqa: S608 - our table
    "WHERE enabled AND next_due_at <= %s ORDER BY next_due_at LIMIT %s FOR UPDATE SKIP LOCKED"
)
_ADVANCE_SQL = (
    f"UPDATE {_TARGET_TABLE} AS t SET next_due_at = v.next_due_at "  # noqa: S608 - our table
    "FROM unnest(%s::bigint[], %s::timestamptz[]) AS v(id, next_due_at) WHERE t.id = v.id"
)
_SLOT_CLAIM_SQL = (
    f"UPDATE {_TARGET_TABLE} AS t SET collected_slot = v.slot "  # noqa: S608 - our table
    "FROM unnest(%s::bigint[], %s::timestamptz[]) AS v(id, slot) "
    "WHERE t.id = v.id AND t.enabled AND (t.collected_slot IS NULL OR t.collected_slot < v.slot) RETURNING t.id"
)


def group_queue(group: str) -> str:
    """The Celery queue a collector group's collections go to."""
    return COLLECT_QUEUE if group == DEFAULT_GROUP else f"{COLLECT_QUEUE}.{group}"


def next_slot(*, due: datetime, interval_seconds: int, now: datetime) -> datetime:
    """The first slot after now on the target's grid (due + whole intervals)."""
    interval = timedelta(seconds=interval_seconds)
    return due + interval * ((now - due) // interval + 1)


@dataclass(frozen=True)
class Due:
    target_id: int
    kind: str
    group: str
    interval_seconds: int
    slot: datetime


@dataclass(frozen=True)
class Send:
    """One message: a task, its arguments, its queue, and when it expires."""

    task: str
    args: tuple
    queue: str
    expires: int


def sends_for(due: Iterable[Due], *, batch_size: int) -> list[Send]:
    """Cheap kinds in batches of up to batch_size per group; the others one message per target."""
    sends: list[Send] = []
    batches: dict[str, list[Due]] = defaultdict(list)
    for item in due:
        if item.kind in BATCHED_KINDS:
            batches[item.group].append(item)
        else:
            sends.append(
                Send(
                    COLLECT_TASK,
                    (item.target_id, item.slot.isoformat()),
                    group_queue(item.group),
                    item.interval_seconds,
                )
            )
    for group, items in batches.items():
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            pairs = [[i.target_id, i.slot.isoformat()] for i in chunk]
            # A message waiting longer than an interval expires instead of piling up behind a slow worker.
            sends.append(Send(COLLECT_BATCH_TASK, (pairs,), group_queue(group), min(i.interval_seconds for i in chunk)))
    return sends


def schedule_due(*, now: datetime | None = None, limit: int = CLAIM_BATCH) -> int:
    """Claim up to limit due targets, move them on, send their collections, commit. How many were claimed.

    Raises QueueUnavailable (and claims nothing) when the broker does not take the messages.
    """
    now = now or timezone.now()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_CLAIM_SQL, [now, limit])
        rows = cursor.fetchall()
        if not rows:
            return 0
        due = [Due(*row) for row in rows]
        cursor.execute(
            _ADVANCE_SQL,
            [
                [d.target_id for d in due],
                [next_slot(due=d.slot, interval_seconds=d.interval_seconds, now=now) for d in due],
            ],
        )
        _send(sends_for(due, batch_size=settings.COLLECT_BATCH_SIZE))
    logger.debug("claimed %d due target(s), the oldest due since %s", len(due), due[0].slot)
    return len(due)


def _send(sends: list[Send]) -> None:
    # One broker connection for the whole claim; any failure leaves the transaction, which rolls back.
    with current_app.producer_or_acquire() as producer:
        for send in sends:
            task_send(send.task, args=send.args, queue=send.queue, expires=send.expires, producer=producer)


def slot_claim(*, slots: list[tuple[int, datetime]]) -> set[int]:
    """Take (target, slot) pairs on for collection: the ids whose slot no message took on before.

    A scheduler that died after sending but before its commit leaves the slot due, so the next one
    sends it again; the copy finds collected_slot already at that slot and is dropped here.
    """
    if not slots:
        return set()
    with connection.cursor() as cursor:
        cursor.execute(_SLOT_CLAIM_SQL, [[target_id for target_id, _ in slots], [slot for _, slot in slots]])
        return {row[0] for row in cursor.fetchall()}


def scheduler_run(*, stop: threading.Event, tick_seconds: float = TICK_SECONDS) -> None:
    """A scheduler's loop until stop is set: each tick, claim while anything is due, then sleep until
    the next tick. A database or broker outage is logged and waited out; nothing claimed is lost."""
    name = f"{socket.gethostname()}:{os.getpid()}"
    last_heartbeat = 0.0
    logger.info("scheduler %s started", name)
    while not stop.is_set():
        tick_started = time.monotonic()
        if time.monotonic() - last_heartbeat >= settings.HEARTBEAT_INTERVAL_SECONDS:
            try:
                scheduler_heartbeat_write(name)
                last_heartbeat = time.monotonic()
            except Exception as exc:  # Redis down: scheduling goes on (the broker may be elsewhere)
                failure_log(logger, "scheduler heartbeat not written", exc)
        try:
            close_old_connections()  # a connection broken by an outage is replaced on the next query
            while not stop.is_set() and schedule_due() >= CLAIM_BATCH:
                pass  # a full batch: more may be due
        except Exception as exc:  # an outage of PostgreSQL or the broker: the claim rolled back
            failure_log(logger, "collections not scheduled", exc)
        stop.wait(max(0.0, tick_seconds - (time.monotonic() - tick_started)))
    try:
        scheduler_heartbeat_clear(name)
    except Exception as exc:
        failure_log(logger, "scheduler heartbeat not cleared", exc)
    logger.info("scheduler %s stopped", name)


# --- the worker's side ------------------------------------------------------------------------------

_pool: tuple[int, ThreadPoolExecutor] | None = None
_pool_lock = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    """This process's collection threads (made after the fork: a pool child must not share its parent's)."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool[0] != os.getpid():
            _pool = (os.getpid(), ThreadPoolExecutor(settings.COLLECT_THREADS, thread_name_prefix="collect"))
        return _pool[1]


def collect_scheduled(*, slots: list[tuple[int, str]], worker: str) -> list[CollectionOutcome]:
    """Collect the targets of (target id, ISO slot) pairs a scheduler sent, each once per slot.

    Pairs whose slot was taken on already (a copy re-sent after a scheduler died) are dropped; the
    rest run concurrently on this process's threads, each under its own lock and with its own
    failure recorded on its target, as collect_target does for one.
    """
    taken = slot_claim(slots=[(target_id, datetime.fromisoformat(slot)) for target_id, slot in slots])
    if len(taken) < len(slots):
        logger.info("dropped %d collection(s) already taken on for their slot", len(slots) - len(taken))
    targets = list(Target.objects.filter(pk__in=taken)) if taken else []
    if len(targets) <= 1:
        outcomes = [collect_target(target=target) for target in targets]
    else:
        outcomes = list(_executor().map(_collect_on_thread, targets))
    connections_report(worker=worker)
    return outcomes


def _collect_on_thread(target: Target) -> CollectionOutcome:
    # Each thread has its own database connection, kept between batches: drop it if it broke.
    close_old_connections()
    try:
        return collect_target(target=target)
    except Exception as exc:  # the database or Redis went away mid-batch: the other targets go on
        failure_log(logger, f"collection of target {target.id} failed", exc)
        return CollectionOutcome(target_id=target.id, ok=False, error=f"{type(exc).__name__}: {exc}")
