"""EXPLAIN on a target: plain and generic plans answered at once, EXPLAIN ANALYZE as a run.

Every EXPLAIN runs inside BEGIN … ROLLBACK, under statement_timeout and lock_timeout, over the
extended query protocol (psycopg's binary=True), which refuses a second statement hidden behind a
semicolon; the text is also checked to be one statement first, so the operator hears why.

- A query with constants: EXPLAIN (FORMAT JSON).
- Normalized text with $1, $2 … (pg_stat_statements): a generic plan. On PostgreSQL 16+ with
  EXPLAIN (GENERIC_PLAN); on 15 and older the text is PREPAREd and EXPLAIN EXECUTE runs it with
  NULLs under plan_cache_mode = force_generic_plan, which is the same generic plan (its estimates do
  not depend on the values) — so the generic plan works on every version Perfpilot supports.
- EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) runs the query, so it is an ExplainRun executed by a worker,
  always rolled back (a DELETE explained deletes nothing), at most one per (target, query
  fingerprint) at a time: the database's partial unique constraint decides, and a second start gets
  the running run (the API answers 409 with it, the page goes to it). Its backend pid is recorded;
  Cancel sends pg_cancel_backend to that pid after checking it still runs our EXPLAIN. A worker that
  dies leaves a run the reaper (`explain_runs_reap`, called by `runs_reap`) ends as interrupted.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
import sqlparse
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone
from psycopg import errors, pq, sql
from sqlparse import tokens

from core.conninfo import scrub
from core.errors import Conflict, InvalidInput
from core.locks import owner_gone, owner_identity
from core.models import AuditEvent
from core.queueing import QueueUnavailable, task_send_on_commit
from core.services import audit_record
from monitoring.models import QueryText, Target
from optimizer.models import ExplainRun
from optimizer.plans import PlanTree, plan_tree
from optimizer.services.liveness import RunHeartbeat
from optimizer.services.sessions import APPLICATION_NAME, open_session
from optimizer.tuners.base import TunerError

logger = logging.getLogger(__name__)

MAX_QUERY_CHARS = 100_000
CANCEL_WAIT_SECONDS = 5.0
GENERIC_PLAN_VERSION = 160000
_PREPARED = "perfpilot_explain"
# SQLSTATE classes that say the query itself is wrong (syntax, unknown table, bad value, unsupported).
_QUERY_AT_FAULT = ("42", "22", "0A", "2B", "3F")


class ExplainTargetError(InvalidInput):
    """The target could not be asked (down, refused, outbound policy): 502, the target is at fault."""

    status_code = 502


@dataclass
class ExplainResult:
    target: Target
    mode: str  # plain | generic
    method: str  # how the plan was obtained, as the page says it
    query: str
    plan: Any
    tree: PlanTree
    server_version: int


# --- the query ---------------------------------------------------------------------------------


def query_check(query: str) -> tuple[str, bool]:
    """One statement, without its trailing semicolon, and whether it has $n parameters."""
    text = (query or "").strip()
    if not text:
        raise InvalidInput("Give the query to explain.", field="query")
    if len(text) > MAX_QUERY_CHARS:
        raise InvalidInput(f"The query is longer than {MAX_QUERY_CHARS:,} characters.", field="query")
    statements = [s for s in sqlparse.parse(text) if str(s).strip().strip(";").strip()]
    if len(statements) != 1:
        raise InvalidInput("Explain one statement at a time (the text holds several).", field="query")
    statement = statements[0]
    text = str(statement).strip().rstrip(";").rstrip()
    has_params = any(t.ttype in tokens.Name.Placeholder and t.value.startswith("$") for t in statement.flatten())
    return text, has_params


def query_fingerprint(query: str) -> str:
    return hashlib.sha256(" ".join(query.split()).encode()).hexdigest()


def query_text_for(*, target: Target, queryid: int) -> str:
    """The normalized text monitoring stored for a pg_stat_statements query id of the target."""
    text = QueryText.objects.filter(target=target, queryid=queryid).values_list("query", flat=True).first()
    if text is None:
        raise InvalidInput(f"No query {queryid} recorded for {target.name}.", field="queryid")
    return text


def _postgres(target: Target) -> None:
    if target.kind != Target.Kind.POSTGRES:
        raise InvalidInput(f"{target.name} is not a PostgreSQL target.", field="target")
    if not target.enabled:
        raise InvalidInput(f"{target.name} is disabled; nothing connects to it.", field="target")


def _message(exc: psycopg.Error, target: Target, timeout_s: float) -> str:
    text = " ".join(str(exc).split())
    if isinstance(exc, errors.QueryCanceled):
        text = f"stopped at statement_timeout ({timeout_s:g} s) or cancelled: {text}"
    elif isinstance(exc, errors.LockNotAvailable):
        text = f"could not take a lock within lock_timeout ({settings.OPTIMIZER_LOCK_TIMEOUT_SECONDS} s): {text}"
    return scrub(f"PostgreSQL at {target.url_display}: {text}", target.url)


def _query_at_fault(exc: psycopg.Error) -> bool:
    return bool(exc.sqlstate) and exc.sqlstate[:2] in _QUERY_AT_FAULT


def _json(conn: psycopg.Connection, statement: str) -> Any:
    # binary=True: the extended protocol, which runs exactly one statement.
    with conn.cursor(binary=True) as cursor:
        cursor.execute(statement.encode(), binary=True)
        return cursor.fetchone()[0]


def _set_local(conn: psycopg.Connection, name: str, value: str) -> None:
    conn.execute(sql.SQL("SET LOCAL {} = {}").format(sql.Identifier(name), sql.Literal(value)))


def _prepare(conn: psycopg.Connection, text: str) -> int:
    """PREPARE the text (extended protocol: one statement, planned, never run); its parameter count."""
    with conn.cursor(binary=True) as cursor:
        cursor.execute(f"PREPARE {_PREPARED} AS {text}".encode(), binary=True)
    return conn.execute(
        "SELECT cardinality(parameter_types) FROM pg_prepared_statements WHERE name = %s", [_PREPARED]
    ).fetchone()[0]


def generic_plan(conn: psycopg.Connection, text: str) -> tuple[Any, str]:
    count = _prepare(conn, text)
    try:
        if conn.info.server_version >= GENERIC_PLAN_VERSION:
            # GENERIC_PLAN cannot go over the extended protocol (its $n would be taken for the protocol's
            # parameters), so it is sent as a simple query, which would run a second statement: the
            # PREPARE above, over the extended protocol, proved the server reads the text as one.
            conn.execute("DEALLOCATE " + _PREPARED)
            count = None
            with conn.cursor() as cursor:
                cursor.execute(f"EXPLAIN (GENERIC_PLAN, FORMAT JSON) {text}".encode())
                return cursor.fetchone()[0], "EXPLAIN (GENERIC_PLAN)"
        _set_local(conn, "plan_cache_mode", "force_generic_plan")
        arguments = f"({', '.join(['NULL'] * count)})" if count else ""
        plan = _json(conn, f"EXPLAIN (FORMAT JSON) EXECUTE {_PREPARED}{arguments}")
    finally:
        if count is not None and conn.info.transaction_status != pq.TransactionStatus.INERROR:
            conn.execute("DEALLOCATE " + _PREPARED)  # (after an error, the ROLLBACK and the closing session end it)
    return plan, "PREPARE + EXPLAIN EXECUTE with plan_cache_mode = force_generic_plan (PostgreSQL < 16)"


def explain(
    *, target: Target, query: str, mode: str = "auto", actor: AbstractBaseUser | None, via: str
) -> ExplainResult:
    """EXPLAIN without running the query: plain for constants, generic for $n parameters ("auto")."""
    _postgres(target)
    text, has_params = query_check(query)
    if mode == "auto":
        mode = "generic" if has_params else "plain"
    if mode == "plain" and has_params:
        raise InvalidInput("The query has $n parameters: ask for the generic plan, or put constants in.", field="mode")
    timeout = settings.OPTIMIZER_STATEMENT_TIMEOUT_SECONDS
    try:
        with open_session(target=target, dry_run=True) as session:
            conn = session.pg
            conn.execute("BEGIN READ ONLY")
            try:
                if mode == "generic":
                    plan, method = generic_plan(conn, text)
                else:
                    plan, method = _json(conn, f"EXPLAIN (FORMAT JSON) {text}"), "EXPLAIN"
            finally:
                if not conn.closed:
                    conn.execute("ROLLBACK")
            version = conn.info.server_version
    except psycopg.Error as exc:
        error_class = InvalidInput if _query_at_fault(exc) else ExplainTargetError
        raise error_class(_message(exc, target, timeout), field="query" if _query_at_fault(exc) else "target") from exc
    except TunerError as exc:  # could not connect, or the outbound policy refused
        raise ExplainTargetError(str(exc), field="target") from exc
    audit_record(
        actor=actor,
        via=via,
        action="optimizer.explain",
        object_repr=f"EXPLAIN on {target.name}",
        detail={"target": target.id, "mode": mode, "query": text[:500]},
    )
    return ExplainResult(
        target=target, mode=mode, method=method, query=text, plan=plan, tree=plan_tree(plan), server_version=version
    )


# --- EXPLAIN ANALYZE runs ------------------------------------------------------------------------


def analyze_statement(query: str) -> str:
    return f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {query}"


def _actor_name(actor: AbstractBaseUser | None) -> str:
    return actor.get_username() if actor is not None and actor.is_authenticated else "system"


def _audit(run: ExplainRun, action: str, *, actor: AbstractBaseUser | None = None, via: str = "system") -> None:
    ok = run.status not in (ExplainRun.Status.FAILED, ExplainRun.Status.INTERRUPTED)
    audit_record(
        actor=actor if actor is not None else run.started_by,
        via=via,
        action=f"optimizer.explain_analyze.{action}",
        object_repr=f"EXPLAIN ANALYZE on {run.target.name}",
        result=AuditEvent.Result.OK if ok else AuditEvent.Result.FAILED,
        detail={"run": run.id, "status": run.status, "query": run.query[:500], "error": run.error[:500]},
    )


def explain_analyze_start(
    *,
    target: Target,
    query: str,
    actor: AbstractBaseUser | None,
    via: str,
    queryid: int | None = None,
    statement_timeout_seconds: float | None = None,
) -> tuple[ExplainRun, bool]:
    """Create a pending run and queue it; or, when one runs for this query on this target, that one.

    Returns (run, created). The queue refusing leaves the run failed with the reason and raises
    QueueUnavailable (a 503)."""
    _postgres(target)
    text, has_params = query_check(query)
    if has_params:
        raise InvalidInput(
            "EXPLAIN ANALYZE runs the query, so it needs constants in place of $1, $2 …; "
            "the generic plan explains normalized text without running it.",
            field="query",
        )
    limit = settings.EXPLAIN_ANALYZE_TIMEOUT_SECONDS
    timeout = float(statement_timeout_seconds or limit)
    if not 1 <= timeout <= limit:
        message = f"statement_timeout_seconds is at least 1 and at most {limit}."
        raise InvalidInput(message, field="statement_timeout_seconds")
    fingerprint = query_fingerprint(text)
    try:
        with transaction.atomic():
            run = ExplainRun.objects.create(
                target=target,
                fingerprint=fingerprint,
                query=text,
                queryid=queryid,
                statement=analyze_statement(text),
                statement_timeout_seconds=timeout,
                started_by=actor if actor is not None and actor.is_authenticated else None,
                started_by_name=_actor_name(actor),
            )
            _audit(run, "start", actor=actor, via=via)
            from optimizer.tasks import explain_analyze_task

            task_send_on_commit(explain_analyze_task, [(run.id,)], on_failure=_not_queued)
    except IntegrityError:
        running = ExplainRun.objects.filter(
            target=target, fingerprint=fingerprint, status__in=ExplainRun.LIVE_STATUSES
        ).first()
        if running is None:  # it ended between our insert and this read: start again
            return explain_analyze_start(
                target=target, query=query, actor=actor, via=via, queryid=queryid,
                statement_timeout_seconds=statement_timeout_seconds,
            )  # fmt: skip
        return running, False
    return run, True


def _not_queued(unsent: list[tuple], error: QueueUnavailable) -> None:
    for (run_id,) in unsent:
        ExplainRun.objects.filter(pk=run_id, status=ExplainRun.Status.PENDING).update(
            status=ExplainRun.Status.FAILED, error=f"Not started: {error}", finished_at=timezone.now()
        )


def explain_analyze_execute(*, run_id: int) -> ExplainRun:
    """Run a pending EXPLAIN ANALYZE (the task). Never raises for the target's failure: the run records it."""
    claimed = ExplainRun.objects.filter(pk=run_id, status=ExplainRun.Status.PENDING).update(
        status=ExplainRun.Status.RUNNING, owner=owner_identity(), heartbeat_at=timezone.now(), started_at=timezone.now()
    )
    run = ExplainRun.objects.select_related("target", "started_by").get(pk=run_id)
    if claimed != 1:
        return run  # a retry, a cancel before it started, or the reaper had it
    status, plan, error = ExplainRun.Status.DONE, None, ""
    with RunHeartbeat(run.id, model=ExplainRun):
        try:
            plan = _analyze(run)
        except psycopg.Error as exc:
            cancelled = ExplainRun.objects.filter(pk=run.pk, cancel_requested_at__isnull=False).exists()
            if cancelled and isinstance(exc, errors.QueryCanceled):
                status, error = ExplainRun.Status.CANCELLED, "Cancelled by an operator; rolled back."
            else:
                status, error = ExplainRun.Status.FAILED, _message(exc, run.target, run.statement_timeout_seconds)
        except TunerError as exc:
            status, error = ExplainRun.Status.FAILED, str(exc)
        except Exception as exc:  # our bug: recorded on the run, never a run left running
            logger.exception("explain run %s failed", run.id)
            status, error = ExplainRun.Status.FAILED, scrub(f"{type(exc).__name__}: {exc}", run.target.url)
    ended = ExplainRun.objects.filter(pk=run.pk, status=ExplainRun.Status.RUNNING).update(
        status=status, plan=plan, error=error, finished_at=timezone.now()
    )
    if not ended:  # the reaper ended it first (its verdict stands), or its target was deleted meanwhile
        return ExplainRun.objects.filter(pk=run.pk).first() or run
    run.refresh_from_db()
    _audit(run, "end")
    return run


def _analyze(run: ExplainRun) -> Any:
    with open_session(
        target=run.target,
        dry_run=False,
        statement_timeout_seconds=run.statement_timeout_seconds,
        lock_timeout_seconds=settings.OPTIMIZER_LOCK_TIMEOUT_SECONDS,
    ) as session:
        conn = session.pg
        ExplainRun.objects.filter(pk=run.pk).update(backend_pid=conn.info.backend_pid)
        conn.execute("BEGIN")
        try:
            _set_local(conn, "statement_timeout", str(round(run.statement_timeout_seconds * 1000)))
            if ExplainRun.objects.filter(pk=run.pk, cancel_requested_at__isnull=False).exists():
                raise errors.QueryCanceled("cancelled before it started")
            return _json(conn, run.statement)
        finally:
            if not conn.closed:  # always: whatever the query did is undone
                conn.execute("ROLLBACK")


def _ours(conn: psycopg.Connection, run: ExplainRun) -> str | None:
    """The backend's state when it still runs this run's EXPLAIN from an optimizer session, else None.

    pg_stat_activity keeps the first track_activity_query_size bytes of a query, so a long statement
    is recognised by that prefix (never an empty one)."""
    row = conn.execute(
        "SELECT state, query FROM pg_stat_activity WHERE pid = %s AND application_name = %s",
        [run.backend_pid, APPLICATION_NAME],
    ).fetchone()
    shown = " ".join((row[1] or "").split()) if row else ""
    if not shown.startswith("EXPLAIN (ANALYZE") or not " ".join(run.statement.split()).startswith(shown):
        return None
    return row[0] or ""


def explain_analyze_cancel(*, run: ExplainRun, actor: AbstractBaseUser | None, via: str) -> ExplainRun:
    """Ask the target to cancel a live run's EXPLAIN; wait (bounded) until the backend stopped it.

    A pending run ends cancelled at once. A running one is cancelled on the target only when the
    recorded backend still runs our statement (a reused pid is never touched); the worker then
    records it cancelled."""
    now = timezone.now()
    marked = ExplainRun.objects.filter(pk=run.pk, status__in=ExplainRun.LIVE_STATUSES).update(
        cancel_requested_at=now, cancel_requested_by=_actor_name(actor)
    )
    if not marked:
        message = f"EXPLAIN ANALYZE run {run.id} is {run.status}; only a live run can be cancelled."
        raise Conflict(message, field="status")
    if ExplainRun.objects.filter(pk=run.pk, status=ExplainRun.Status.PENDING).update(
        status=ExplainRun.Status.CANCELLED, error="Cancelled before it started.", finished_at=now
    ):
        run.refresh_from_db()
        _audit(run, "cancel", actor=actor, via=via)
        return run
    run.refresh_from_db()
    _audit(run, "cancel", actor=actor, via=via)
    if run.backend_pid is not None:
        _cancel_backend(run)
    # The worker writes the verdict as the EXPLAIN returns; wait a little for it so the answer shows it.
    deadline = time.monotonic() + CANCEL_WAIT_SECONDS
    while time.monotonic() < deadline:
        run.refresh_from_db()
        if not run.is_live:
            break
        time.sleep(0.1)
    return run


def _cancel_backend(run: ExplainRun) -> None:
    try:
        with open_session(target=run.target, dry_run=True, statement_timeout_seconds=5) as session:
            conn = session.pg
            if _ours(conn, run) != "active":
                return  # finished, or not our statement (any more): nothing to cancel
            conn.execute("SELECT pg_cancel_backend(%s)", [run.backend_pid])
    except TunerError as exc:
        logger.warning("cancelling explain run %s on its target failed: %s", run.id, exc)


# --- the reaper ---------------------------------------------------------------------------------


def explain_runs_reap(*, now: datetime | None = None) -> list[int]:
    """End as interrupted the runs whose worker is gone (dead on this host, or no heartbeat for
    OPTIMIZER_RUN_STALE) and the pending runs no worker took; cancel what a dead worker left running."""
    now = now or timezone.now()
    stale_before = now - timedelta(seconds=settings.OPTIMIZER_RUN_STALE_SECONDS)
    lost_before = now - timedelta(seconds=settings.OPTIMIZER_PENDING_TIMEOUT_SECONDS)
    ended = []
    for run in ExplainRun.objects.filter(status=ExplainRun.Status.RUNNING).select_related("target"):
        last = run.heartbeat_at or run.started_at or run.created_at
        if not owner_gone(run.owner) and last >= stale_before:
            continue
        who = f"pid {run.owner.get('pid')} on {run.owner.get('host')}" if run.owner else "its worker"
        note = ""
        if run.backend_pid is not None and run.target.enabled:
            _cancel_backend(run)
            note = f" Asked the target to cancel its EXPLAIN (backend {run.backend_pid}) if it still ran."
        error = f"Interrupted: the worker running it ({who}) stopped before it finished; rolled back.{note}"
        if _interrupt(run, ExplainRun.Status.RUNNING, error):
            ended.append(run.id)
    lost = ExplainRun.objects.filter(status=ExplainRun.Status.PENDING, created_at__lt=lost_before)
    for run in lost.select_related("target"):
        if _interrupt(run, ExplainRun.Status.PENDING, "Interrupted before it started: no worker took it."):
            ended.append(run.id)
    return ended


def _interrupt(run: ExplainRun, expected: str, error: str) -> bool:
    if not ExplainRun.objects.filter(pk=run.pk, status=expected).update(
        status=ExplainRun.Status.INTERRUPTED, error=error, finished_at=timezone.now()
    ):
        return False
    run.refresh_from_db()
    logger.warning("explain run %s interrupted: %s", run.id, error)
    _audit(run, "end")
    return True
