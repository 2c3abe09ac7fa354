"""A run's life is owned by the database: its worker's heartbeat, and the reaper that ends what a
dead worker left.

When a worker claims a run it records its owner (host, pid and the pid's start time, Celery task;
`core.locks.owner_identity`) and then writes `heartbeat_at` every `HEARTBEAT_SECONDS` from a thread
while the run works. Beat's "Optimizer: end interrupted runs" (`reap_runs_task`, every 30 s) calls
`runs_reap`, which ends as "interrupted":

- a running run whose owner is provably dead (a process of this host that no longer exists), or
  whose heartbeat is older than `PERFPILOT_OPTIMIZER_RUN_STALE` while the target's lock is not held
  by it (its owner's lock expired or was freed);
- a pending run no task has touched for `PERFPILOT_OPTIMIZER_PENDING_TIMEOUT`: its task was lost
  (never queued, or dropped with the broker's data). A run waiting behind another run's lock is
  touched at each retry, so it is not taken for lost; it ends "skipped" after its bounded retries.

Ending a running run keeps what the row knows (evidence before, statements run so far, the one in
progress), cancels the statement still running on the target when the recorded backend is still
ours (`application_name` and query text checked first), drops the INVALID index a cancelled
CREATE INDEX CONCURRENTLY leaves, says in the run's error which of these happened, gives an apply's
recommendation back (open, with the error), audits it and sends the tuner-failure event.

The same pass ends the EXPLAIN ANALYZE runs a dead worker left (`explain.explain_runs_reap`).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import psycopg
import redis
from django.conf import settings
from django.db import connection
from django.utils import timezone
from psycopg import sql

from core.conninfo import bounded_conninfo, scrub
from core.locks import lock_acquire, lock_break_if_owner_gone, lock_holder, lock_key, owner_gone
from monitoring.models import Target
from optimizer.models import OptimizationRun, Recommendation

logger = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 5.0
CANCEL_WAIT_SECONDS = 10.0
OPTIMIZER_APPLICATION_NAME = "perfpilot-optimizer"  # what optimizer sessions set (sessions.APPLICATION_NAME)
_CREATE_INDEX_CONCURRENTLY = re.compile(
    r"^\s*CREATE\s+(?:UNIQUE\s+)?INDEX\s+CONCURRENTLY\s+(?:IF\s+NOT\s+EXISTS\s+)?"
    r"((?:\"(?:[^\"]|\"\")+\"|[\w$]+)(?:\.(?:\"(?:[^\"]|\"\")+\"|[\w$]+))?)",
    re.IGNORECASE,
)


class RunHeartbeat:
    """While the block runs, a thread writes the run's heartbeat_at every HEARTBEAT_SECONDS (an
    OptimizationRun, or another model with the same status and heartbeat_at, such as ExplainRun)."""

    def __init__(self, run_id: int, *, every: float = HEARTBEAT_SECONDS, model: type = OptimizationRun) -> None:
        self.run_id = run_id
        self.every = every
        self.model = model
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"run {run_id} heartbeat", daemon=True)

    def _beat(self) -> None:
        try:
            while not self._stop.wait(self.every):
                try:
                    self.model.objects.filter(pk=self.run_id, status="running").update(heartbeat_at=timezone.now())
                except Exception as exc:  # the database away for a moment: the next beat tries again
                    logger.warning("heartbeat of %s %s failed: %s", self.model.__name__, self.run_id, exc)
        finally:
            connection.close()  # this thread's own connection

    def __enter__(self) -> RunHeartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()


def recommendation_release(run: OptimizationRun) -> None:
    """An apply run has ended: its recommendation becomes applied (a real apply that succeeded) or
    open again with the reason, so it can be retried. Only a claim still held (applying) changes."""
    if run.action != OptimizationRun.Action.APPLY or run.recommendation_id is None or run.is_live:
        return
    applied = run.status == OptimizationRun.Status.SUCCEEDED and not run.dry_run
    Recommendation.objects.filter(pk=run.recommendation_id, status=Recommendation.Status.APPLYING).update(
        status=Recommendation.Status.APPLIED if applied else Recommendation.Status.OPEN,
        status_changed_at=timezone.now(),
        status_changed_by=run.started_by_name if applied else "system",
        apply_error="" if applied or run.status == OptimizationRun.Status.SUCCEEDED else run.error[:2000],
    )


# --- the reaper ------------------------------------------------------------------------------


@dataclass
class ReapResult:
    interrupted: list[int] = field(default_factory=list)
    locks_freed: list[str] = field(default_factory=list)
    explains_interrupted: list[int] = field(default_factory=list)


def runs_reap(*, now: datetime | None = None) -> ReapResult:
    """End the runs whose worker is gone and the pending runs no task will start (module docstring)."""
    now = now or timezone.now()
    result = ReapResult()
    stale_before = now - timedelta(seconds=settings.OPTIMIZER_RUN_STALE_SECONDS)
    lost_before = now - timedelta(seconds=settings.OPTIMIZER_PENDING_TIMEOUT_SECONDS)
    running = OptimizationRun.objects.filter(status=OptimizationRun.Status.RUNNING).select_related("target")
    for run in running:
        key = lock_key("optimize", run.target_id) if run.target_id else None
        if key and owner_gone(run.owner):
            if _break(key):
                result.locks_freed.append(key)
        elif not _stale(run, key, stale_before):
            continue
        if _interrupt(run, key):
            result.interrupted.append(run.id)
    lost = OptimizationRun.objects.filter(status=OptimizationRun.Status.PENDING, created_at__lt=lost_before).exclude(
        heartbeat_at__gte=lost_before
    )
    for run in lost.select_related("target"):
        minutes = settings.OPTIMIZER_PENDING_TIMEOUT_SECONDS / 60
        error = (
            f"Interrupted before it started: no worker took it within {minutes:g} minutes "
            "(its task was lost or never queued). Nothing was done on the target."
        )
        if _end(run, expected=OptimizationRun.Status.PENDING, error=error):
            result.interrupted.append(run.id)
    # Locks whose owner is provably dead, whether or not a run row still points at them.
    for key in _optimizer_lock_keys():
        if key not in result.locks_freed and _break(key):
            result.locks_freed.append(key)
    from optimizer.services.explain import explain_runs_reap  # explain imports this module

    result.explains_interrupted = explain_runs_reap(now=now)
    return result


def _break(key: str) -> bool:
    try:
        return lock_break_if_owner_gone(key) is not None
    except redis.RedisError:
        return False


def _optimizer_lock_keys() -> list[str]:
    from core.redis_client import get_redis

    try:
        return list(get_redis().scan_iter(match=lock_key("optimize", "*"), count=500))
    except redis.RedisError:
        return []


def _stale(run: OptimizationRun, key: str | None, stale_before: datetime) -> bool:
    """No heartbeat since stale_before, and the target's lock is not held by this run."""
    last = run.heartbeat_at or run.started_at or run.created_at
    if last >= stale_before:
        return False
    if key is None:
        return True
    try:
        holder = lock_holder(key)
    except redis.RedisError:  # Redis away: the heartbeat alone decides
        return True
    return holder is None or holder.label != f"run {run.id}"


def _interrupt(run: OptimizationRun, key: str | None) -> bool:
    """End a running run whose worker is gone, after cancelling what it left running on the target.
    Under the target's lock (when it can be had), so no new run starts there meanwhile."""
    try:
        lock = lock_acquire(key, label=f"reaper for run {run.id}", wait=5) if key else None
    except redis.RedisError:
        lock = None
    if lock is None:
        return _end(run, expected=OptimizationRun.Status.RUNNING, error=_interrupt_message(run, _cleanup(run)))
    with lock:
        return _end(run, expected=OptimizationRun.Status.RUNNING, error=_interrupt_message(run, _cleanup(run)))


def _in_progress(run: OptimizationRun) -> str | None:
    for entry in reversed(run.statements or []):
        if entry.get("in_progress"):
            return str(entry.get("statement", ""))
    return None


def _interrupt_message(run: OptimizationRun, outcome: str) -> str:
    owner = run.owner or {}
    who = f"pid {owner.get('pid')} on {owner.get('host')}" if owner else "its worker"
    if owner.get("task_id"):
        who += f", task {owner['task_id']}"
    done = [e for e in run.statements or [] if not e.get("in_progress") and not e.get("error")]
    parts = [f"Interrupted: the worker running it ({who}) stopped before it finished."]
    parts.append(f"{len(done)} statement(s) had completed." if run.statements else "No statement had started.")
    if outcome:
        parts.append(outcome)
    return " ".join(parts)


def _cleanup(run: OptimizationRun) -> str:
    """Cancel the statement the dead worker left running on a PostgreSQL target; returns what happened."""
    statement = _in_progress(run)
    target = run.target
    if statement is None or run.backend_pid is None or target is None or target.kind != Target.Kind.POSTGRES:
        return ""
    try:
        conninfo = bounded_conninfo(
            target.url, statement_timeout_ms=15000, lock_timeout_ms=5000, application_name="perfpilot-reaper"
        )
        conninfo["connect_timeout"] = 5
        with psycopg.connect(autocommit=True, **conninfo) as conn:
            note = _cancel(conn, run.backend_pid, statement)
            return note + _invalid_index_note(conn, statement)
    except psycopg.Error as exc:
        message = scrub(" ".join(str(exc).split()), target.url)
        return f"Could not reach the target to check the statement {statement!r} (backend {run.backend_pid}): {message}"


def _ours(conn: psycopg.Connection, pid: int, statement: str) -> tuple[str, str] | None:
    row = conn.execute(
        "SELECT state, query FROM pg_stat_activity WHERE pid = %s AND application_name = %s",
        [pid, OPTIMIZER_APPLICATION_NAME],
    ).fetchone()
    if row is None or " ".join((row[1] or "").split()) != " ".join(statement.split()):
        return None
    return row[0] or "", row[1]


def _cancel(conn: psycopg.Connection, pid: int, statement: str) -> str:
    found = _ours(conn, pid, statement)
    if found is None or found[0] != "active":
        return (
            f"The statement {statement!r} was no longer running on the target (backend {pid} ended or moved on): "
            "it finished or was stopped there, unrecorded."
        )
    conn.execute("SELECT pg_cancel_backend(%s)", [pid])
    deadline = time.monotonic() + CANCEL_WAIT_SECONDS
    while time.monotonic() < deadline:
        now = _ours(conn, pid, statement)
        if now is None or now[0] != "active":
            return f"Cancelled the statement {statement!r} still running on the target (backend {pid})."
        time.sleep(0.2)
    waited = f"{CANCEL_WAIT_SECONDS:g} s"
    return f"Asked the target to cancel {statement!r} (backend {pid}); it was still running {waited} later."


def _invalid_index_note(conn: psycopg.Connection, statement: str) -> str:
    """A cancelled CREATE INDEX CONCURRENTLY leaves an INVALID index behind: drop it, and say so."""
    match = _CREATE_INDEX_CONCURRENTLY.match(statement)
    if not match:
        return ""
    name = match.group(1)
    row = conn.execute(
        "SELECT i.indisvalid FROM pg_index i WHERE i.indexrelid = to_regclass(%s)",
        [name],
    ).fetchone()
    if row is None:
        return f" The index {name} does not exist on the target."
    if row[0]:
        return f" The index {name} exists and is valid: the statement completed on the target."
    try:
        parts = [p.strip('"').replace('""', '"') for p in re.findall(r'"(?:[^"]|"")+"|[\w$]+', name)]
        conn.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(*parts)))
    except psycopg.Error as exc:
        return f" The cancelled build left the INVALID index {name}; dropping it failed: {' '.join(str(exc).split())}"
    return f" Dropped the INVALID index {name} the cancelled build left behind."


def _end(run: OptimizationRun, *, expected: str, error: str) -> bool:
    """Interrupted, only if still in the expected status (a worker finishing now wins the race)."""
    now = timezone.now()
    statements = [
        {k: v for k, v in entry.items() if k != "in_progress"}
        | ({"interrupted": True} if entry.get("in_progress") else {})
        for entry in run.statements or []
    ]
    ended = OptimizationRun.objects.filter(pk=run.pk, status=expected).update(
        status=OptimizationRun.Status.INTERRUPTED,
        error=error,
        statements=statements,
        finished_at=now,
        summary=run.summary or "Interrupted",
    )
    if not ended:
        return False
    from optimizer.services.runs import audit_run, failure_report  # runs imports this module

    run.refresh_from_db()
    logger.warning("optimizer run %s interrupted: %s", run.id, error)
    recommendation_release(run)
    audit_run(run)
    failure_report(run, verb="was interrupted")
    return True
