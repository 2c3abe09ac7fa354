"""Bounded connections from the optimizer to a target.

PostgreSQL: one autocommit psycopg connection (VACUUM and CREATE/DROP INDEX CONCURRENTLY cannot run
inside a transaction) whose every statement runs under statement_timeout and lock_timeout: the
analysis timeout for reads, the action timeout for the statements a tuner runs. Redis: a client
with socket timeouts. Each statement run (or, in a dry run, planned) is recorded in `executed`.
"""

from __future__ import annotations

import math
import shlex
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
import redis
from django.conf import settings
from psycopg import errors, sql
from psycopg.rows import dict_row

from core import outbound
from core.conninfo import bounded_conninfo, scrub
from core.redis_client import DRIVER_INFO
from monitoring.models import Target
from optimizer.tuners.base import TunerError

APPLICATION_NAME = "perfpilot-optimizer"


class ActionFailed(TunerError):
    """A statement of an action failed on the target; the message is operator-readable."""


@dataclass
class Session:
    target: Target
    dry_run: bool
    statement_timeout_ms: int
    action_timeout_ms: int
    lock_timeout_ms: int
    pg: psycopg.Connection | None = None
    redis: redis.Redis | None = None
    executed: list[dict[str, Any]] = field(default_factory=list)
    on_backend: Any = None  # called with the backend pid before each PostgreSQL action
    on_statement: Any = None  # called with each action's statement before it runs (not in dry runs)

    # --- reads ---------------------------------------------------------------------------
    def query(self, statement: str | sql.Composable, params: Any = None) -> list[tuple]:
        if self.pg is None:
            raise TunerError(f"Target {self.target.name} is not a PostgreSQL target.")
        try:
            with self.pg.cursor() as cursor:
                cursor.execute(statement, params)
                return cursor.fetchall() if cursor.description else []
        except psycopg.Error as exc:
            raise ActionFailed(self._message(exc, self.statement_timeout_ms)) from exc

    def query_dicts(self, statement: str | sql.Composable, params: Any = None) -> list[dict[str, Any]]:
        if self.pg is None:
            raise TunerError(f"Target {self.target.name} is not a PostgreSQL target.")
        try:
            with self.pg.cursor(row_factory=dict_row) as cursor:
                cursor.execute(statement, params)
                return cursor.fetchall() if cursor.description else []
        except psycopg.Error as exc:
            raise ActionFailed(self._message(exc, self.statement_timeout_ms)) from exc

    @property
    def server_version(self) -> int:
        return self.pg.info.server_version if self.pg is not None else 0

    def render(self, statement: sql.Composable) -> str:
        return statement.as_string(self.pg)

    # --- actions -------------------------------------------------------------------------
    def execute_action(self, statement: str) -> float:
        """Run one statement of an action (or only record it, in a dry run). Returns its duration in ms."""
        if self.dry_run:
            self.executed.append({"statement": statement, "dry_run": True})
            return 0.0
        if self.on_statement is not None:
            self.on_statement(statement)
        started = time.perf_counter()
        if self.redis is not None and self.pg is None:
            self._redis_command(statement)
        else:
            self._pg_action(statement)
        duration_ms = (time.perf_counter() - started) * 1000
        self.executed.append({"statement": statement, "duration_ms": round(duration_ms, 2)})
        return duration_ms

    def record(self, statement: str, *, duration_ms: float | None = None, **extra: Any) -> None:
        """Record an action run by the tuner itself (e.g. a Redis pipeline), or planned in a dry run."""
        entry: dict[str, Any] = {"statement": statement, **extra}
        if self.dry_run:
            entry["dry_run"] = True
        elif duration_ms is not None:
            entry["duration_ms"] = round(duration_ms, 2)
        self.executed.append(entry)

    def _pg_action(self, statement: str) -> None:
        if self.pg is None:
            raise TunerError(f"Target {self.target.name} is not a PostgreSQL target.")
        if self.on_backend is not None:
            self.on_backend(self.pg.info.backend_pid)
        try:
            self.pg.execute(sql.SQL("SET statement_timeout = {}").format(sql.Literal(self.action_timeout_ms)))
            try:
                self.pg.execute(statement)
            finally:
                self.pg.execute(sql.SQL("SET statement_timeout = {}").format(sql.Literal(self.statement_timeout_ms)))
        except psycopg.Error as exc:
            self.executed.append({"statement": statement, "error": scrub(str(exc), self.target.url)})
            raise ActionFailed(self._message(exc, self.action_timeout_ms)) from exc

    def _redis_command(self, statement: str) -> None:
        try:
            self.redis.execute_command(*shlex.split(statement))
        except redis.RedisError as exc:
            self.executed.append({"statement": statement, "error": str(exc)})
            raise ActionFailed(f"Redis at {self.target.url_display} refused {statement!r}: {exc}") from exc

    def _message(self, exc: psycopg.Error, timeout_ms: int) -> str:
        text = " ".join(str(exc).split())
        where = f"PostgreSQL at {self.target.url_display}"
        if isinstance(exc, errors.LockNotAvailable):
            reason = f"could not take a lock within lock_timeout ({self.lock_timeout_ms / 1000:g} s): {text}"
        elif isinstance(exc, errors.QueryCanceled):
            reason = f"stopped a statement at statement_timeout ({timeout_ms / 1000:g} s): {text}"
        else:
            reason = f"answered with an error: {text}"
        return scrub(f"{where} {reason}", self.target.url)


def _pg_connection(target: Target, *, statement_timeout_ms: int, lock_timeout_ms: int) -> psycopg.Connection:
    url = target.url
    try:
        params = bounded_conninfo(
            url,
            statement_timeout_ms=statement_timeout_ms,
            lock_timeout_ms=lock_timeout_ms,
            application_name=APPLICATION_NAME,
        )
        params["connect_timeout"] = max(1, math.ceil(target.timeout_seconds))
        params = outbound.psycopg_params(params, what=f"The host of PostgreSQL at {target.url_display}")
        conn = psycopg.connect(autocommit=True, **params)
    except psycopg.Error as exc:
        raise TunerError(scrub(f"Cannot connect to PostgreSQL at {target.url_display}: {exc}", url)) from exc
    except outbound.OutboundRefused as exc:
        raise TunerError(str(exc)) from exc
    except OSError as exc:  # the host name does not resolve
        raise TunerError(scrub(f"Cannot connect to PostgreSQL at {target.url_display}: {exc}", url)) from exc
    conn.prepare_threshold = None  # the index advisor PREPAREs its own statements; psycopg's must not mix in
    return conn


@contextmanager
def open_session(
    *,
    target: Target,
    dry_run: bool,
    statement_timeout_seconds: float | None = None,
    action_timeout_seconds: float | None = None,
    lock_timeout_seconds: float | None = None,
) -> Iterator[Session]:
    statement_ms = round(1000 * (statement_timeout_seconds or settings.OPTIMIZER_STATEMENT_TIMEOUT_SECONDS))
    action_ms = round(1000 * (action_timeout_seconds or settings.OPTIMIZER_ACTION_TIMEOUT_SECONDS))
    lock_ms = round(1000 * (lock_timeout_seconds or settings.OPTIMIZER_LOCK_TIMEOUT_SECONDS))
    session = Session(
        target=target,
        dry_run=dry_run,
        statement_timeout_ms=statement_ms,
        action_timeout_ms=action_ms,
        lock_timeout_ms=lock_ms,
    )
    if not target.enabled:
        raise TunerError(f"Target {target.name} is disabled: Perfpilot does not connect to it until it is enabled.")
    if target.kind == Target.Kind.POSTGRES:
        session.pg = _pg_connection(target, statement_timeout_ms=statement_ms, lock_timeout_ms=lock_ms)
    elif target.kind == Target.Kind.REDIS:
        session.redis = outbound.redis_checked(
            redis.Redis.from_url(
                target.url,
                socket_connect_timeout=target.timeout_seconds,
                socket_timeout=max(statement_ms, action_ms) / 1000,
                decode_responses=False,
                driver_info=DRIVER_INFO,
            )
        )
    else:
        raise TunerError(f"The optimizer works on PostgreSQL and Redis targets, not {target.get_kind_display()}.")
    try:
        yield session
    finally:
        if session.pg is not None:
            session.pg.close()
        if session.redis is not None:
            session.redis.close()
