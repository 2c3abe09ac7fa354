"""Live activity of a PostgreSQL target, read now: running queries, idle-in-transaction sessions,
locks and the blocking tree (pg_blocking_pids), for the Live activity page and its API.

Only client backends of the target's database are shown, never the connection reading them. Reading
connects to the target through the optimizer's bounded session (statement_timeout, lock_timeout,
the outbound policy), so callers pass `live=False` for viewers: only operators make Perfpilot connect out.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.utils import timezone

from core.errors import InvalidInput
from monitoring.models import Target
from optimizer.tuners.base import TunerError

QUERY_CHARS = 2000  # of each query's text; the page shows less, the title and the API all of it
MAX_LOCKS = 200
READ_TIMEOUT_SECONDS = 5

# Blockers are kept even when idle (an advisory lock outlives its query), so the tree has its roots.
_BACKENDS_SQL = """
WITH a AS (
  SELECT pid, usename::text AS username, application_name,
         coalesce(client_hostname, host(client_addr), 'local') AS client, state, backend_start, xact_start, query_start,
         greatest(extract(epoch FROM now() - query_start), 0)::float8 AS query_seconds,
         greatest(extract(epoch FROM now() - xact_start), 0)::float8 AS xact_seconds,
         greatest(extract(epoch FROM now() - state_change), 0)::float8 AS state_seconds,
         wait_event_type, wait_event, left(query, %s) AS query,
         CASE WHEN wait_event_type = 'Lock' THEN pg_blocking_pids(pid) ELSE '{}'::int[] END AS blocked_by
  FROM pg_stat_activity
  WHERE backend_type = 'client backend' AND datname = current_database() AND pid <> pg_backend_pid()
)
SELECT * FROM a WHERE state IS DISTINCT FROM 'idle' OR pid IN (SELECT unnest(blocked_by) FROM a)
ORDER BY query_start NULLS LAST, pid
"""
# Transaction-id locks are what a row lock waits on; their granted side is every writer's and says little.
_LOCKS_SQL = """
SELECT l.pid, l.locktype, l.mode, l.granted,
       CASE WHEN l.relation IS NOT NULL THEN l.relation::regclass::text
            WHEN l.transactionid IS NOT NULL THEN 'transaction ' || l.transactionid::text
            ELSE l.locktype END AS object
FROM pg_locks l
WHERE l.pid = ANY(%s) AND l.locktype <> 'virtualxid' AND NOT (l.locktype = 'transactionid' AND l.granted)
ORDER BY l.granted, l.pid, object
LIMIT %s
"""


@dataclass(frozen=True)
class Backend:
    pid: int
    username: str | None
    application_name: str
    client: str
    state: str | None
    backend_start: datetime
    xact_start: datetime | None
    query_start: datetime | None
    query_seconds: float | None
    xact_seconds: float | None
    state_seconds: float | None  # in its current state: how long an idle transaction has been idle
    wait_event_type: str | None
    wait_event: str | None
    query: str
    blocked_by: list[int]

    @property
    def running(self) -> bool:
        return self.state not in ("idle", "idle in transaction", "idle in transaction (aborted)")

    @property
    def idle_in_transaction(self) -> bool:
        return self.state in ("idle in transaction", "idle in transaction (aborted)")

    @property
    def wait(self) -> str:
        return f"{self.wait_event_type}: {self.wait_event}" if self.wait_event_type else ""


@dataclass(frozen=True)
class BlockingRow:
    depth: int  # 0 for a session blocking others that waits on nobody
    pid: int
    backend: Backend | None  # None: a backend outside this database's client sessions

    @property
    def indent(self) -> range:
        return range(self.depth)


@dataclass
class Activity:
    target: Target
    backends: list[Backend] = field(default_factory=list)
    locks: list[dict[str, Any]] = field(default_factory=list)
    blocking: list[BlockingRow] = field(default_factory=list)
    read_at: datetime | None = None
    error: str = ""

    @property
    def running(self) -> list[Backend]:
        return [b for b in self.backends if b.running]

    @property
    def idle_in_transaction(self) -> list[Backend]:
        return [b for b in self.backends if b.idle_in_transaction]


def blocking_tree(backends: list[Backend]) -> list[BlockingRow]:
    """Each blocker followed by the sessions waiting on it, depth first; a wait cycle starts at its lowest pid."""
    by_pid = {b.pid: b for b in backends}
    waiting_on: dict[int, list[Backend]] = defaultdict(list)
    for backend in backends:
        for blocker in backend.blocked_by:
            waiting_on[blocker].append(backend)
    roots = [pid for pid in waiting_on if pid not in by_pid or not by_pid[pid].blocked_by]
    rows: list[BlockingRow] = []
    seen: set[int] = set()

    def visit(pid: int, depth: int) -> None:
        seen.add(pid)
        rows.append(BlockingRow(depth, pid, by_pid.get(pid)))
        for waiter in sorted(waiting_on.get(pid, []), key=lambda b: b.pid):
            if waiter.pid not in seen:
                visit(waiter.pid, depth + 1)

    for pid in sorted(roots):
        visit(pid, 0)
    for pid in sorted(waiting_on):  # only sessions waiting on each other are left: a cycle
        if pid not in seen:
            visit(pid, 0)
    return rows


LIVE_FOR_OPERATORS = "Live activity is read from the target for operators only."
LIVE_NOT_WHEN_DISABLED = "The target is disabled: Perfpilot does not connect to it, so there is no live activity."


def activity_read(*, target: Target, live: bool) -> Activity:
    """The target's sessions now, or an Activity whose `error` says why there are none to show."""
    from optimizer.services.sessions import open_session

    if target.kind != Target.Kind.POSTGRES:
        raise InvalidInput(f"{target.name} is not a PostgreSQL target.", field="target")
    activity = Activity(target=target)
    if not live:
        activity.error = LIVE_FOR_OPERATORS
        return activity
    if not target.enabled:
        activity.error = LIVE_NOT_WHEN_DISABLED
        return activity
    try:
        with open_session(target=target, dry_run=True, statement_timeout_seconds=READ_TIMEOUT_SECONDS) as session:
            rows = session.query_dicts(_BACKENDS_SQL, [QUERY_CHARS])
            activity.backends = [Backend(**{**row, "query": row["query"] or ""}) for row in rows]
            pids = [b.pid for b in activity.backends]
            activity.locks = session.query_dicts(_LOCKS_SQL, [pids, MAX_LOCKS]) if pids else []
    except TunerError as exc:
        activity.error = str(exc)
        return activity
    activity.blocking = blocking_tree(activity.backends)
    activity.read_at = timezone.now()
    return activity
