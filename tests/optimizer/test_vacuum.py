"""The VACUUM/ANALYZE tuner against the embedded PostgreSQL 18 and this machine's PostgreSQL 15."""

from __future__ import annotations

import os
import socket
import threading

import pytest
from django.db import connection
from django.utils import timezone
from psycopg import sql

from core.models import AuditEvent
from optimizer.models import OptimizationRun, Recommendation
from optimizer.services.runs import run_create, run_execute
from tests.optimizer.conftest import dead_tuples, make_dead_tuples, make_target, wait_for

SCHEMA = 'My "Odd" Schema'
TABLE = 'Dead Rows "Table"'


@pytest.fixture(params=["pg18", "pg15"])
def database(request):
    return request.getfixturevalue(request.param)


def _run(target, *, dry_run=False, **params):
    params.setdefault("min_dead_tuples", 100)
    params.setdefault("tables", [f"{SCHEMA}.{TABLE}"])
    run = run_create(tuner="vacuum", target=target, trigger="operator", actor=None, dry_run=dry_run, params=params)
    return run_execute(run_id=run.id)


def test_vacuum_removes_the_dead_tuples_of_a_chosen_table_with_quoted_names(db, database):
    make_dead_tuples(database, SCHEMA, TABLE, rows=5000, deleted=4000)
    run = _run(make_target(database))
    assert run.status == OptimizationRun.Status.SUCCEEDED, run.error
    qualified = f"{SCHEMA}.{TABLE}"
    assert [s["statement"] for s in run.statements] == ['VACUUM (ANALYZE) "My ""Odd"" Schema"."Dead Rows ""Table"""']
    before = run.evidence_before["actions"][qualified]
    after = run.evidence_after["actions"][qualified]
    assert before["dead_tuples"] >= 4000
    assert after["dead_tuples"] <= before["dead_tuples"] * 0.05
    assert run.statements[0]["duration_ms"] > 0
    assert dead_tuples(database, SCHEMA, TABLE) <= 200
    assert AuditEvent.objects.filter(action="optimizer.run", result="ok", detail__run=run.id).exists()


def test_dry_run_records_the_vacuum_and_changes_nothing(db, pg18):
    make_dead_tuples(pg18, SCHEMA, TABLE, rows=3000, deleted=2000)
    run = _run(make_target(pg18), dry_run=True)
    assert run.status == OptimizationRun.Status.SUCCEEDED, run.error
    assert run.statements == [
        {"statement": 'VACUUM (ANALYZE) "My ""Odd"" Schema"."Dead Rows ""Table"""', "dry_run": True}
    ]
    assert run.evidence_after == {}
    assert dead_tuples(pg18, SCHEMA, TABLE) >= 2000
    assert "would run 1 action" in run.summary


def test_outside_the_maintenance_window_the_vacuum_is_deferred(db, pg18):
    make_dead_tuples(pg18, SCHEMA, TABLE, rows=3000, deleted=2000)
    hour = (timezone.localtime().hour + 2) % 24
    window = f"{hour:02d}:00-{(hour + 1) % 24:02d}:00"
    run = _run(make_target(pg18), maintenance_window=window)
    assert run.status == OptimizationRun.Status.DEFERRED
    assert f"Outside the maintenance window {window}" in run.error
    assert run.statements[0]["deferred"] is True
    assert dead_tuples(pg18, SCHEMA, TABLE) >= 2000


def test_lock_timeout_stops_a_vacuum_waiting_on_a_held_lock(db, pg15):
    make_dead_tuples(pg15, SCHEMA, TABLE, rows=3000, deleted=2000)
    target = make_target(pg15)
    with pg15.connect() as holder:
        holder.execute("BEGIN")
        holder.execute(
            sql.SQL("LOCK TABLE {}.{} IN SHARE UPDATE EXCLUSIVE MODE").format(
                sql.Identifier(SCHEMA), sql.Identifier(TABLE)
            )
        )
        run = _run(target, lock_timeout_seconds=0.5)
        holder.execute("ROLLBACK")
    assert run.status == OptimizationRun.Status.FAILED
    assert "lock_timeout (0.5 s)" in run.error
    assert run.statements[0]["error"]
    assert AuditEvent.objects.filter(action="optimizer.run", result="failed", detail__run=run.id).exists()


def test_two_runs_on_one_target_never_overlap(transactional_db, pg15):
    make_dead_tuples(pg15, SCHEMA, TABLE, rows=3000, deleted=2000)
    target = make_target(pg15)
    results = {}
    with pg15.connect() as holder:
        holder.execute("BEGIN")
        holder.execute(
            sql.SQL("LOCK TABLE {}.{} IN SHARE UPDATE EXCLUSIVE MODE").format(
                sql.Identifier(SCHEMA), sql.Identifier(TABLE)
            )
        )

        def first_run():
            try:
                results["first"] = _run(target, lock_timeout_seconds=3)
            finally:
                connection.close()

        first = threading.Thread(target=first_run)
        first.start()
        # While the first run waits on the table lock (holding the target's lock), a second one starts.
        wait_for(
            lambda: OptimizationRun.objects.filter(target=target, status="running").exclude(backend_pid=None).exists(),
            what="the first run to start its VACUUM",
        )
        results["second"] = _run(target)
        holder.execute("ROLLBACK")
        first.join(30)
    assert results["second"].status == OptimizationRun.Status.SKIPPED
    assert "still in progress" in results["second"].error
    assert f"(run {results['first'].id}, pid {os.getpid()} on {socket.gethostname()})" in results["second"].error
    assert results["first"].status == OptimizationRun.Status.SUCCEEDED, results["first"].error


def test_hot_tables_and_default_settings_get_autovacuum_advice(db, pg18):
    with pg18.connect() as conn:
        conn.execute("DROP TABLE IF EXISTS hot_counter")
        conn.execute("CREATE TABLE hot_counter (id int PRIMARY KEY, n int)")
        conn.execute("INSERT INTO hot_counter SELECT g, 0 FROM generate_series(1, 2000) g")
        conn.execute("UPDATE hot_counter SET n = n + 1")
        conn.execute("ANALYZE hot_counter")
        conn.execute("SELECT pg_stat_force_next_flush()")
    target = make_target(pg18)
    run = run_create(
        tuner="vacuum", target=target, trigger="operator", actor=None, dry_run=True, params={"hot_table_rows": 1000}
    )
    run = run_execute(run_id=run.id)
    assert run.status == OptimizationRun.Status.SUCCEEDED, run.error
    titles = set(Recommendation.objects.filter(target=target).values_list("title", flat=True))
    assert "Autovacuum public.hot_counter sooner (hot table on default scale factor)" in titles
    assert "Autovacuum settings left at their defaults" in titles
    advice = Recommendation.objects.get(target=target, title__startswith="Autovacuum public.hot_counter")
    assert advice.statement.startswith('ALTER TABLE "public"."hot_counter" SET (autovacuum_vacuum_scale_factor = 0.02')
