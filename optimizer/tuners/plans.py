"""Plan capture: the generic plan of a target's top queries, as the role that runs each one gets it.

For the top queries of the target's database by total time (pg_stat_statements, read live: its
userid names the role that runs the query, which monitoring's snapshots do not keep), each plan is
taken inside a transaction always rolled back, in which

1. the settings `ALTER ROLE ... SET` and `ALTER DATABASE ... SET` gave that role in this database
   (pg_db_role_setting: the database's, then the role's, then the role's in this database, as a new
   session of the role gets them) are applied with `set_config(..., is_local => true)`;
2. `SET LOCAL ROLE` becomes the role (so its privileges and search_path apply too);
3. the generic plan is read (EXPLAIN (GENERIC_PLAN) on PostgreSQL 16+, PREPARE + EXPLAIN EXECUTE
   under plan_cache_mode = force_generic_plan before: optimizer.services.explain.generic_plan).

The plan's shape (node types, join types and order, relations, indexes; never costs or row
estimates) is fingerprinted. The tuner reads only; optimizer.services.plan_regressions stores the
captures and decides, from the fingerprints and pg_stat_statements' cumulative counters, whether a
changed plan is a regression.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import pq, sql

from optimizer.services.explain import generic_plan
from optimizer.tuners.base import Analysis, Tuner, TunerSchedule, register

logger = logging.getLogger(__name__)

# What identifies a plan's shape; everything else (costs, rows, widths, conditions' constants) may vary.
SHAPE_KEYS = (
    "Node Type",
    "Join Type",
    "Strategy",
    "Partial Mode",
    "Parent Relationship",
    "Subplan Name",
    "Relation Name",
    "Index Name",
    "CTE Name",
    "Scan Direction",
)

# The heaviest plannable statements of this database, per (query, role), by total time; catalog reads
# (ours, the collector's, and any tool's) are left out.
TOP_QUERIES_SQL = """
SELECT s.queryid, r.rolname::text AS role, s.query, s.calls, s.total_exec_time
FROM pg_stat_statements s
JOIN pg_roles r ON r.oid = s.userid
WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND s.toplevel AND s.calls > 0 AND s.queryid IS NOT NULL
  AND s.query ~* '^\\s*(select|with|insert|update|delete)\\M'
  AND s.query !~* 'pg_catalog\\.|pg_stat_|pg_extension|pg_db_role_setting|pg_prepared_statements|set_config\\('
ORDER BY s.total_exec_time DESC
LIMIT %s
"""

# The settings a new session of the role gets in this database, least specific first (so the last wins).
ROLE_SETTINGS_SQL = """
SELECT unnest(s.setconfig)
FROM pg_db_role_setting s
LEFT JOIN pg_database d ON d.oid = s.setdatabase
LEFT JOIN pg_roles r ON r.oid = s.setrole
WHERE (s.setdatabase = 0 OR d.datname = current_database()) AND (s.setrole = 0 OR r.rolname = %s)
ORDER BY (s.setrole <> 0), (s.setdatabase <> 0)
"""


def plan_shape(plan: dict[str, Any]) -> dict[str, Any]:
    """The shape of one plan node and its children, in order (which is the join order)."""
    shape = {key: plan[key] for key in SHAPE_KEYS if key in plan}
    children = [plan_shape(child) for child in plan.get("Plans", ()) if isinstance(child, dict)]
    if children:
        shape["Plans"] = children
    return shape


def plan_fingerprint(explained: Any) -> str:
    """sha256 of the shape of EXPLAIN (FORMAT JSON) output: equal for equal plans whatever their costs."""
    top = explained[0] if isinstance(explained, list) else explained
    document = json.dumps(plan_shape(top["Plan"]), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(document.encode()).hexdigest()


@dataclass
class PlanSnapshot:
    """One query's generic plan as its role gets it, with pg_stat_statements' counters at that moment."""

    queryid: int
    role: str
    query: str
    calls: int
    total_time_ms: float
    plan: Any
    fingerprint: str
    settings: dict[str, str] = field(default_factory=dict)


def _role_settings(conn: psycopg.Connection, role: str) -> dict[str, str]:
    settings: dict[str, str] = {}
    for (entry,) in conn.execute(ROLE_SETTINGS_SQL, [role]).fetchall():
        name, _, value = entry.partition("=")
        settings[name] = value
    return settings


def capture_plan(conn: psycopg.Connection, *, role: str, query: str) -> tuple[Any, dict[str, str]]:
    """The generic plan of `query` for `role` with the role's settings (see the module), and those settings.

    Runs inside BEGIN READ ONLY … ROLLBACK on an autocommit connection; raises psycopg.Error."""
    conn.execute("BEGIN READ ONLY")
    try:
        settings = {}
        for name, value in _role_settings(conn, role).items():
            # One the connecting user may not set (a superuser-only one) is left out, not the whole plan.
            conn.execute("SAVEPOINT perfpilot_setting")
            try:
                conn.execute("SELECT set_config(%s, %s, true)", [name, value])
            except psycopg.Error as exc:
                conn.execute("ROLLBACK TO SAVEPOINT perfpilot_setting")
                logger.info("cannot apply %s=%s of role %s: %s", name, value, role, exc)
                continue
            settings[name] = value
        conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role)))
        plan, _method = generic_plan(conn, query)
    finally:
        if not conn.closed and conn.info.transaction_status != pq.TransactionStatus.IDLE:
            conn.execute("ROLLBACK")
    return plan, settings


@register
class PlanCaptureTuner(Tuner):
    kind = "plan_capture"
    label = "Plan capture"
    description = (
        "Captures the generic plans of the top queries per role; a changed plan that got slower is a regression."
    )
    # Every 15 minutes: a plan regression is told within two captures (30 min) of the change, and one
    # capture costs one EXPLAIN per top query (planning only, nothing runs).
    schedule = TunerSchedule(
        name="Optimizer: plan capture",
        crontab="*/15 * * * *",
        description="Captures the generic plans of the top queries; records and alerts plan regressions.",
    )
    defaults = {"max_queries": 20}

    def top_queries(self) -> list[dict[str, Any]] | None:
        """The heaviest queries per role, or None without pg_stat_statements in this database."""
        if not self.session.query("SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'"):
            return None
        return self.session.query_dicts(TOP_QUERIES_SQL, [int(self.params["max_queries"])])

    def analyze(self) -> Analysis:
        analysis = Analysis()
        queries = self.top_queries()
        if queries is None:
            analysis.notes.append("pg_stat_statements is not installed in this database: no plans captured")
            queries = []
        failed = 0
        for row in queries:
            try:
                plan, settings = capture_plan(self.session.pg, role=row["role"], query=row["query"])
            except psycopg.Error as exc:  # a query this session cannot plan (a temporary table, a privilege)
                failed += 1
                logger.info("cannot capture the plan of query %s as %s: %s", row["queryid"], row["role"], exc)
                continue
            analysis.captures.append(
                PlanSnapshot(
                    queryid=row["queryid"],
                    role=row["role"],
                    query=row["query"],
                    calls=row["calls"],
                    total_time_ms=row["total_exec_time"],
                    plan=plan,
                    fingerprint=plan_fingerprint(plan),
                    settings=settings,
                )
            )
        analysis.evidence = {"queries": len(queries), "plans_captured": len(analysis.captures), "not_planned": failed}
        if failed:
            analysis.notes.append(f"{failed} query(ies) could not be planned")
        return analysis
