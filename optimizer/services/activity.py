"""Cancel a target backend's query (pg_cancel_backend) or end the backend (pg_terminate_backend).

The caller names the backend as the page or API showed it: pid, backend_start and query_start. The
signal is sent by the same statement that checks them, so a pid reused by another session, a session
that moved on to another query, a backend that is not a client of the target's database, and our own
connection are never signalled. Every attempt is audited (who, target, pid, user, query, result).
Terminating can be turned off with PERFPILOT_ALLOW_TERMINATE.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied
from psycopg import errors, sql

from core.errors import Conflict, InvalidInput
from core.models import AuditEvent
from core.services import audit_record
from monitoring.models import Target
from optimizer.services.sessions import open_session
from optimizer.tuners.base import TunerError

Signal = Literal["cancel", "terminate"]
SIGNAL_TIMEOUT_SECONDS = 5
TERMINATE_WAIT_MS = 3000  # PostgreSQL 14+ waits this long for the backend to be gone
QUERY_CHARS = 1000

_FUNCTIONS = {"cancel": "pg_cancel_backend", "terminate": "pg_terminate_backend"}
# Times compare to the millisecond: JSON answers carry milliseconds (Django's encoder), and a pid reused
# within the same millisecond is not a case to design for.
_MATCH = """pid = %(pid)s AND backend_type = 'client backend' AND datname = current_database()
  AND pid <> pg_backend_pid()
  AND date_trunc('milliseconds', backend_start) = date_trunc('milliseconds', %(backend_start)s::timestamptz)
  AND date_trunc('milliseconds', query_start)
      IS NOT DISTINCT FROM date_trunc('milliseconds', %(query_start)s::timestamptz)"""
_SIGNAL_SQL = (
    "SELECT usename::text, application_name, left(query, %(chars)s), {call} FROM pg_stat_activity WHERE {match}"
)
_WHY_SQL = """SELECT backend_type, datname = current_database(), pid = pg_backend_pid(), backend_start,
  date_trunc('milliseconds', backend_start) = date_trunc('milliseconds', %s::timestamptz), query_start
FROM pg_stat_activity WHERE pid = %s"""


class TargetUnavailable(InvalidInput):
    """The target could not be reached or read: nothing was signalled (503)."""

    status_code = 503


@dataclass(frozen=True)
class SignalResult:
    action: Signal
    pid: int
    signalled: bool  # cancel: the signal was sent; terminate: the backend is gone (or the signal sent, before 14)
    username: str
    query: str
    message: str


def _call(action: Signal, server_version: int) -> sql.Composable:
    if action == "terminate" and server_version >= 140000:
        return sql.SQL("pg_terminate_backend(pid, {})").format(sql.Literal(TERMINATE_WAIT_MS))
    return sql.SQL("{}(pid)").format(sql.Identifier(_FUNCTIONS[action]))


def _why_not(session, pid: int, backend_start: datetime) -> Conflict:
    """Why the backend as shown is not there to signal, read after nothing was sent."""
    ((database,),) = session.query("SELECT current_database()")
    rows = session.query(_WHY_SQL, [backend_start, pid])
    if not rows:
        return Conflict(f"There is no backend with pid {pid} any more: nothing was sent.", field="pid")
    backend_type, same_database, ours, started, same_session, query_started = rows[0]
    if ours or backend_type != "client backend" or not same_database:
        return Conflict(
            f"Backend {pid} is not a client session of database “{database}”: nothing was sent.", field="pid"
        )
    if not same_session:
        return Conflict(
            f"Pid {pid} belongs to another session now (started {started.isoformat()}): nothing was sent.",
            field="backend_start",
        )
    return Conflict(
        f"Backend {pid} runs another query than the one shown (started "
        f"{query_started.isoformat() if query_started else 'never'}): nothing was sent. Look again and retry.",
        field="query_start",
    )


def _audit(*, action: Signal, target: Target, pid: int, actor, via: str, result: str, detail: dict) -> None:
    audit_record(
        actor=actor,
        via=via,
        action=f"optimizer.backend_{action}",
        object_repr=f"pid {pid} on {target.name}",
        result=result,
        detail={"target": target.name, "target_id": target.id, "pid": pid, **detail},
    )


def backend_signal(
    *,
    target: Target,
    action: Signal,
    pid: int,
    backend_start: datetime,
    query_start: datetime | None,
    actor: AbstractBaseUser | None,
    via: str,
) -> SignalResult:
    """Cancel the query of, or terminate, the backend `pid` of the target, if it is still the one shown."""
    if target.kind != Target.Kind.POSTGRES:
        raise InvalidInput(f"{target.name} is not a PostgreSQL target.", field="target")
    shown = {"backend_start": backend_start.isoformat(), "query_start": query_start and query_start.isoformat()}
    if action == "terminate" and not settings.OPTIMIZER_ALLOW_TERMINATE:
        message = "Terminating backends is turned off here (PERFPILOT_ALLOW_TERMINATE=False); cancel the query instead."
        _audit(action=action, target=target, pid=pid, actor=actor, via=via, result=AuditEvent.Result.DENIED,
               detail={**shown, "error": message})  # fmt: skip
        raise PermissionDenied(message)
    params = {"pid": pid, "backend_start": backend_start, "query_start": query_start, "chars": QUERY_CHARS}
    try:
        with open_session(target=target, dry_run=False, statement_timeout_seconds=SIGNAL_TIMEOUT_SECONDS) as session:
            statement = sql.SQL(_SIGNAL_SQL).format(call=_call(action, session.server_version), match=sql.SQL(_MATCH))
            try:
                rows = session.query(statement, params)
            except TunerError as exc:
                if isinstance(exc.__cause__, errors.InsufficientPrivilege):
                    raise Conflict(
                        f"{exc} Grant pg_signal_backend to the target's user (it cannot signal superusers' sessions).",
                        field="pid",
                    ) from exc
                raise
            if not rows:
                raise _why_not(session, pid, backend_start)
    except Conflict as exc:
        _audit(action=action, target=target, pid=pid, actor=actor, via=via, result=AuditEvent.Result.FAILED,
               detail={**shown, "error": str(exc)})  # fmt: skip
        raise
    except TunerError as exc:
        _audit(action=action, target=target, pid=pid, actor=actor, via=via, result=AuditEvent.Result.FAILED,
               detail={**shown, "error": str(exc)})  # fmt: skip
        raise TargetUnavailable(str(exc), field="target") from exc
    username, application, query, signalled = rows[0]
    if action == "cancel":
        message = f"Cancel sent to backend {pid}." if signalled else f"Backend {pid} could not be signalled."
    else:
        message = f"Backend {pid} terminated." if signalled else f"Backend {pid} was signalled but is not gone yet."
    _audit(
        action=action,
        target=target,
        pid=pid,
        actor=actor,
        via=via,
        result=AuditEvent.Result.OK if signalled else AuditEvent.Result.FAILED,
        detail={**shown, "user": username, "application": application, "query": query, "signalled": bool(signalled)},
    )
    return SignalResult(action, pid, bool(signalled), username or "", query or "", message)
