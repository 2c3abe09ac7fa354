"""Real servers for the optimizer tests: a database of our own on the embedded PostgreSQL 18 (with
pg_stat_statements) and one on this machine's PostgreSQL 15 with HypoPG; both dropped afterwards."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import quote

import psycopg
import pytest
from django.conf import settings
from django.utils import timezone
from psycopg import sql

from monitoring.models import QueryStat, QueryText, Target
from monitoring.services.targets import TargetInput, target_create
from optimizer.models import OptimizationRun, Recommendation
from optimizer.services.runs import run_create, run_execute

LOCAL_PG15_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"


@dataclass(frozen=True)
class Database:
    name: str
    url: str
    version: int

    def connect(self, **kwargs) -> psycopg.Connection:
        return psycopg.connect(self.url, autocommit=True, connect_timeout=5, **kwargs)

    def execute(self, *statements) -> None:
        with self.connect() as conn:
            for statement in statements:
                conn.execute(statement)

    def scalar(self, query, params=None):
        with self.connect() as conn:
            return conn.execute(query, params).fetchone()[0]


def _embedded_url(database: str) -> str:
    db = settings.DATABASES["default"]
    password = quote(db["PASSWORD"] or "", safe="")
    return f"postgresql://{quote(db['USER'], safe='')}:{password}@{db['HOST']}:{db['PORT']}/{database}"


def _own_database(admin_url: str, name: str, url: str, *, template: str, extensions: tuple[str, ...]):
    ident = sql.Identifier(name)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(ident, sql.Identifier(template)))
    with psycopg.connect(url, autocommit=True) as conn:
        for extension in extensions:
            conn.execute(sql.SQL("CREATE EXTENSION IF NOT EXISTS {}").format(sql.Identifier(extension)))
        version = conn.info.server_version
    return ident, version


def _drop(admin_url: str, ident) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))


@pytest.fixture(scope="session")
def pg18() -> Iterator[Database]:
    name = f"pp_optimizer_{os.getpid()}"
    url = _embedded_url(name)
    ident, version = _own_database(_embedded_url("postgres"), name, url, template="template1", extensions=())
    yield Database(name, url, version)
    _drop(_embedded_url("postgres"), ident)


@pytest.fixture(scope="session")
def pg15() -> Iterator[Database]:
    """This machine's PostgreSQL 15 with HypoPG: the verified path. Never skipped."""
    name = f"pp_optimizer_{os.getpid()}"
    url = f"postgresql://postgres@127.0.0.1:5432/{name}"
    ident, version = _own_database(LOCAL_PG15_ADMIN_URL, name, url, template="template0", extensions=("hypopg",))
    yield Database(name, url, version)
    _drop(LOCAL_PG15_ADMIN_URL, ident)


def make_target(database: Database, name: str | None = None) -> Target:
    data = TargetInput(
        name=name or f"{database.name}-{time.monotonic_ns()}",
        kind="postgres",
        url=database.url,
        interval_seconds=10,
        timeout_seconds=5,
    )
    return target_create(data=data, actor=None, via="system")


def plant_workload(target: Target, queries: list[tuple[str, int, float]], *, database: str, at=None) -> list[int]:
    """Monitoring snapshots (QueryText + QueryStat) of a workload: (normalized text, calls, total ms)."""
    at = at or timezone.now() - timedelta(minutes=5)
    ids = []
    for number, (text, calls, total_ms) in enumerate(queries, start=1):
        queryid = 9_000_000 + number * 7 + target.id * 1000
        QueryText.objects.get_or_create(target=target, queryid=queryid, defaults={"query": text, "database": database})
        plant_stat(target, queryid, at=at, calls=calls, total_ms=total_ms)
        ids.append(queryid)
    return ids


def plant_stat(target: Target, queryid: int, *, at, calls: int, total_ms: float, rows=None, hit=0, read=0) -> None:
    """One monitoring snapshot (a one-minute QueryStat delta) of a query; rows default to the calls."""
    QueryStat.objects.create(
        target=target,
        queryid=queryid,
        collected_at=at,
        interval_seconds=60,
        calls=calls,
        total_time_ms=total_ms,
        rows=calls if rows is None else rows,
        shared_blks_hit=hit,
        shared_blks_read=read,
    )


def plant_applied(
    target: Target, *, at, evidence: dict, title: str, dry_run: bool = False, status: str = "succeeded", observed=None
) -> OptimizationRun:
    """An index recommendation applied on the target (its apply run finished at `at`); `observed`, as
    services/speedups.py writes it: {queryid: (before_ms, after_ms)}."""
    recommendation = Recommendation.objects.create(
        target=target,
        tuner="indexes",
        fingerprint=f"applied-{Recommendation.objects.count()}",
        category="missing_index",
        title=title,
        status="applied",
        evidence=evidence,
    )
    after = {}
    if observed:
        queries = {
            str(qid): {"before_ms": b, "after_ms": a, "speedup": round(b / a, 2)} for qid, (b, a) in observed.items()
        }
        before_ms = sum(b for b, _ in observed.values()) / len(observed)
        after_ms = sum(a for _, a in observed.values()) / len(observed)
        speedup = round(before_ms / after_ms, 2)
        after = {
            "observed": {"queries": queries, "speedup": speedup, "mean_before_ms": before_ms, "mean_after_ms": after_ms}
        }
    return OptimizationRun.objects.create(
        tuner="indexes",
        action="apply",
        target=target,
        target_name=target.name,
        recommendation=recommendation,
        trigger="operator",
        status=status,
        dry_run=dry_run,
        started_at=at - timedelta(seconds=5),
        finished_at=at,
        evidence_after=after,
    )


def wait_for(predicate, *, timeout: float = 20, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def make_invalid_index(database: Database, table: str, index: str) -> None:
    """A table of 50 rows with an invalid index on it: a CREATE UNIQUE INDEX CONCURRENTLY that failed."""
    table_name, index_name = sql.Identifier(table), sql.Identifier(index)
    with database.connect() as conn:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table_name))
        conn.execute(sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, v int)").format(table_name))
        conn.execute(sql.SQL("INSERT INTO {} SELECT g, 1 FROM generate_series(1, 50) g").format(table_name))
        with pytest.raises(psycopg.errors.UniqueViolation, match="could not create unique index"):
            conn.execute(sql.SQL("CREATE UNIQUE INDEX CONCURRENTLY {} ON {} (v)").format(index_name, table_name))


def dead_tuples(database: Database, schema: str, table: str) -> int:
    with database.connect() as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute(
            "SELECT n_dead_tup FROM pg_stat_user_tables WHERE schemaname = %s AND relname = %s", [schema, table]
        ).fetchone()
        return row[0] if row else 0


def make_dead_tuples(database: Database, schema: str, table: str, *, rows: int, deleted: int) -> None:
    """A table of `rows` rows with `deleted` of them deleted, its dead tuples visible in the statistics."""
    qualified = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))
    with database.connect() as conn:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(qualified))
        conn.execute(
            sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, payload text) WITH (autovacuum_enabled = off)").format(
                qualified
            )
        )
        conn.execute(
            sql.SQL("INSERT INTO {} SELECT g, md5(g::text) FROM generate_series(1, %s) g").format(qualified), [rows]
        )
        conn.execute(sql.SQL("ANALYZE {}").format(qualified))
        conn.execute(sql.SQL("DELETE FROM {} WHERE id <= %s").format(qualified), [deleted])
        conn.execute("SELECT pg_stat_force_next_flush()")
        conn.execute("SELECT 1")
    wait_for(lambda: dead_tuples(database, schema, table) >= deleted, what=f"{deleted} dead tuples in {table}")


def advise_indexes(target: Target, **params) -> OptimizationRun:
    """One index advisor run (not a dry run) on `target`, asserted to have succeeded."""
    run = run_create(tuner="indexes", target=target, trigger="operator", actor=None, dry_run=False, params=params)
    run = run_execute(run_id=run.id)
    assert run.status == OptimizationRun.Status.SUCCEEDED, run.error
    return run
