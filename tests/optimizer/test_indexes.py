"""The index advisor: HypoPG-verified on this machine's PostgreSQL 15, pg_stats-estimated on the
embedded PostgreSQL 18 with a real pg_stat_statements workload, and the index hygiene reports."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from psycopg import sql

from core.models import AuditEvent
from monitoring.models import QueryStat
from monitoring.services.collection import collect_target
from optimizer.models import OptimizationRun, Recommendation
from optimizer.services.runs import recommendation_apply_start, run_create, run_execute
from optimizer.services.speedups import speedups_measure_all
from tests.optimizer.conftest import advise_indexes, make_target, plant_workload

SCHEMA = "Sales Dept"
TABLE = "Order Items"
QUALIFIED = '"Sales Dept"."Order Items"'
WORKLOAD = [
    # customer lookups: equality on a selective column, newest first
    (f'SELECT * FROM {QUALIFIED} WHERE "Customer ""Id""" = $1 ORDER BY created_at DESC LIMIT $2', 5000, 90000.0),
    # sku lookups: equality plus a range
    (f"SELECT count(*) FROM {QUALIFIED} WHERE sku = $1 AND created_at > $2", 3000, 60000.0),
    # a low-selectivity filter that no index would help
    (f"SELECT count(*) FROM {QUALIFIED} WHERE status = $1", 100, 20000.0),
]


def _orders(database) -> None:
    table = sql.SQL("{}.{}").format(sql.Identifier(SCHEMA), sql.Identifier(TABLE))
    with database.connect() as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(SCHEMA)))
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(SCHEMA)))
        conn.execute(
            sql.SQL(
                'CREATE TABLE {} (id bigint PRIMARY KEY, "Customer ""Id""" int, sku text, status text, '
                "created_at timestamptz, note text)"
            ).format(table)
        )
        conn.execute(
            sql.SQL(
                "INSERT INTO {} SELECT g, g % 20000, 'sku-' || (g % 5000), (ARRAY['new','paid','sent'])[g % 3 + 1], "
                "now() - g * interval '1 second', md5(g::text) FROM generate_series(1, 200000) g"
            ).format(table)
        )
        conn.execute(sql.SQL("ANALYZE {}").format(table))


def _missing(target) -> dict[str, Recommendation]:
    found = Recommendation.objects.filter(target=target, category="missing_index", status="open")
    return {tuple(r.evidence["columns"]).__repr__(): r for r in found}


def test_hypopg_verifies_multicolumn_candidates_on_postgres_15(db, pg15):
    assert pg15.version < 160000  # the PREPARE + force_generic_plan path
    _orders(pg15)
    target = make_target(pg15)
    plant_workload(target, WORKLOAD, database=pg15.name)
    run = advise_indexes(target)
    assert run.evidence_before["hypopg"] == 1
    advice = _missing(target)
    assert set(advice) == {repr(('Customer "Id"', "created_at")), repr(("sku", "created_at"))}
    customer = advice[repr(('Customer "Id"', "created_at"))]
    assert customer.verified
    assert customer.statement.startswith(
        'CREATE INDEX CONCURRENTLY "pp_order_items_customer_id_created_at_idx" ON "Sales Dept"."Order Items" '
        '("Customer ""Id""", "created_at" DESC)'
    )
    query = customer.evidence["queries"][0]
    assert query["cost_after"] <= query["cost_before"] / 2
    assert "verified with HypoPG" in customer.explanation
    assert not any("status" in key for key in advice)


def test_advice_is_deduplicated_across_runs_and_goes_obsolete_when_the_workload_moves_on(db, pg15):
    _orders(pg15)
    target = make_target(pg15)
    plant_workload(target, WORKLOAD[:1], database=pg15.name)
    advise_indexes(target)
    advise_indexes(target)
    first = Recommendation.objects.get(target=target, category="missing_index")
    QueryStat.objects.filter(target=target).delete()
    advise_indexes(target)
    first.refresh_from_db()
    assert first.status == Recommendation.Status.OBSOLETE


def test_apply_builds_the_index_concurrently_logs_it_and_marks_the_advice_applied(db, pg15):
    _orders(pg15)
    target = make_target(pg15)
    queryids = plant_workload(target, WORKLOAD[:1], database=pg15.name)
    advise_indexes(target)
    advice = Recommendation.objects.get(target=target, category="missing_index")

    dry = run_execute(
        run_id=recommendation_apply_start(recommendation=advice, actor=None, trigger="api", dry_run=True).id
    )
    assert dry.status == OptimizationRun.Status.SUCCEEDED and dry.statements[0]["dry_run"] is True
    index_name = advice.evidence["index_name"]
    assert pg15.scalar("SELECT count(*) FROM pg_class WHERE relname = %s", [index_name]) == 0

    run = run_execute(run_id=recommendation_apply_start(recommendation=advice, actor=None, trigger="api").id)
    assert run.status == OptimizationRun.Status.SUCCEEDED, run.error
    assert run.statements[0]["statement"] == advice.statement
    assert pg15.scalar(
        "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = %s",
        [index_name],
    )
    assert run.evidence_before["index_bytes"] == 0 and run.evidence_after["index_bytes"] > 0
    advice.refresh_from_db()
    assert advice.status == Recommendation.Status.APPLIED
    assert AuditEvent.objects.filter(action="optimizer.apply", result="ok", detail__run=run.id).exists()

    # Monitoring's next snapshots show the query faster: the observed speed-up is logged.
    QueryStat.objects.create(
        target=target,
        queryid=queryids[0],
        collected_at=timezone.now() + timedelta(seconds=1),
        interval_seconds=60,
        calls=5000,
        total_time_ms=900.0,
        rows=5000,
        shared_blks_hit=0,
        shared_blks_read=0,
    )
    assert speedups_measure_all() == 1
    run.refresh_from_db()
    assert run.evidence_after["observed"]["speedup"] == pytest.approx(100.0)
    assert "observed speed-up 100x" in run.summary


def test_a_failed_concurrent_build_leaves_no_invalid_index(db, pg15):
    _orders(pg15)
    target = make_target(pg15)
    plant_workload(target, WORKLOAD[:1], database=pg15.name)
    advise_indexes(target)
    advice = Recommendation.objects.get(target=target, category="missing_index")
    run = run_create(
        tuner="indexes",
        target=target,
        trigger="operator",
        actor=None,
        dry_run=False,
        action="apply",
        recommendation=advice,
        params={"action_timeout_seconds": 0.001},
    )
    run = run_execute(run_id=run.id)
    assert run.status == OptimizationRun.Status.FAILED
    assert "statement_timeout" in run.error
    assert run.statements[-1]["statement"].startswith("DROP INDEX CONCURRENTLY IF EXISTS")
    assert pg15.scalar("SELECT count(*) FROM pg_class WHERE relname = %s", [advice.evidence["index_name"]]) == 0
    advice.refresh_from_db()
    assert advice.status == Recommendation.Status.OPEN


def test_without_hypopg_advice_comes_from_a_real_workload_and_is_unverified(db, pg18):
    with pg18.connect() as conn:
        conn.execute("DROP TABLE IF EXISTS events")
        conn.execute("CREATE TABLE events (id bigint PRIMARY KEY, account int, kind text, at timestamptz)")
        conn.execute(
            "INSERT INTO events SELECT g, g % 5000, 'k' || (g % 4), now() - g * interval '1 s' "
            "FROM generate_series(1, 50000) g"
        )
        conn.execute("ANALYZE events")
    target = make_target(pg18)
    assert collect_target(target=target).ok
    with pg18.connect() as conn:
        for account in range(40):
            conn.execute("SELECT * FROM events WHERE account = %s", [account])
    outcome = collect_target(target=target)
    assert outcome.ok and outcome.statements > 0
    run = advise_indexes(target)
    assert run.evidence_before["hypopg"] == 0
    assert "unverified" in run.summary
    advice = Recommendation.objects.get(target=target, category="missing_index")
    assert advice.evidence["columns"] == ["account"]
    assert not advice.verified
    assert advice.estimated_impact.startswith("unverified")


def test_unused_duplicate_invalid_and_unindexed_foreign_keys_are_reported(db, pg18):
    with pg18.connect() as conn:
        conn.execute("DROP TABLE IF EXISTS line CASCADE")
        conn.execute("DROP TABLE IF EXISTS head CASCADE")
        conn.execute("CREATE TABLE head (id int PRIMARY KEY)")
        conn.execute('CREATE TABLE line (id int PRIMARY KEY, head_id int REFERENCES head, a int, b int, "Odd Col" int)')
        conn.execute("INSERT INTO line SELECT g, NULL, g % 3, g, 1 FROM generate_series(1, 100) g")
        conn.execute("CREATE INDEX line_a ON line (a)")
        conn.execute("CREATE INDEX line_a_b ON line (a, b)")
        conn.execute("ALTER TABLE line ADD COLUMN code text")
        conn.execute("CREATE INDEX line_code ON line (code)")
        conn.execute("CREATE INDEX line_code_like ON line (code text_pattern_ops)")  # serves LIKE: no duplicate
        conn.execute("CREATE TABLE line_note (id int PRIMARY KEY, line_id int REFERENCES line)")
        conn.execute("CREATE INDEX line_note_line ON line_note (line_id)")  # an FK's only index: kept
        with pytest.raises(Exception, match="could not create unique index"):
            conn.execute('CREATE UNIQUE INDEX CONCURRENTLY "line odd" ON line ("Odd Col")')
    target = make_target(pg18)
    advise_indexes(target, unused_window_days=0)
    found = {(r.category, r.title) for r in Recommendation.objects.filter(target=target)}
    assert ("duplicate_index", "Drop public.line_a, covered by line_a_b") in found
    # line_a is unused too: one finding, one DROP, both reasons.
    [line_a] = Recommendation.objects.filter(target=target, statement__endswith='"public"."line_a"')
    assert line_a.evidence["also"] == ["unused_index"] and "It is also unused" in line_a.explanation
    assert ("unused_index", "Drop unused index public.line_a_b") in found
    assert ("invalid_index", "Drop invalid index public.line odd") in found
    assert ("fk_index", "Index foreign key line_head_id_fkey on public.line (head_id)") in found
    assert not any(title.startswith("Drop unused index public.line_pkey") for _, title in found)
    assert not any("line_code_like" in title and category == "duplicate_index" for category, title in found)
    assert not any("line_note_line" in title for _, title in found)
    # With the default window, a server whose statistics are younger than 7 days proves nothing unused.
    fresh = make_target(pg18)
    advise_indexes(fresh)
    assert not Recommendation.objects.filter(target=fresh, category="unused_index").exists()
    invalid = Recommendation.objects.get(target=target, category="invalid_index")
    assert invalid.statement == 'DROP INDEX CONCURRENTLY IF EXISTS "public"."line odd"'
    run = run_execute(run_id=recommendation_apply_start(recommendation=invalid, actor=None, trigger="api").id)
    assert run.status == OptimizationRun.Status.SUCCEEDED, run.error
    assert pg18.scalar("SELECT count(*) FROM pg_class WHERE relname = 'line odd'") == 0


def test_generic_plans_of_normalized_queries_on_postgres_18_and_15(db, pg18, pg15):
    from optimizer.services.sessions import open_session
    from optimizer.tuners.indexes import IndexAdvisor, WorkloadQuery
    from optimizer.tuners.querytree import query_shape

    for database in (pg18, pg15):
        _orders(database)
        text = WORKLOAD[1][0]
        with open_session(target=make_target(database), dry_run=True) as session:
            advisor = IndexAdvisor(session)
            query = WorkloadQuery(1, text, 1.0, 1, 1.0, query_shape(text))
            plan = advisor.plan(query)
            assert plan["Total Cost"] > 0
            assert advisor.plan(query)["Total Cost"] == plan["Total Cost"]  # repeatable: nothing left prepared


def test_a_constant_predicate_becomes_a_verified_partial_index(db, pg15):
    with pg15.connect() as conn:
        conn.execute("DROP TABLE IF EXISTS jobs")
        conn.execute("CREATE TABLE jobs (id int PRIMARY KEY, queue int, done boolean, payload text)")
        conn.execute("INSERT INTO jobs SELECT g, g % 50, g % 100 <> 0, md5(g::text) FROM generate_series(1, 200000) g")
        conn.execute("ANALYZE jobs")
    target = make_target(pg15)
    plant_workload(target, [("SELECT * FROM jobs WHERE queue = $1 AND NOT done", 1000, 50000.0)], database=pg15.name)
    advise_indexes(target)
    advice = Recommendation.objects.get(target=target, category="missing_index")
    assert advice.verified
    assert advice.statement.endswith('ON "public"."jobs" ("queue") WHERE NOT "done"')
    run = run_execute(run_id=recommendation_apply_start(recommendation=advice, actor=None, trigger="api").id)
    assert run.status == OptimizationRun.Status.SUCCEEDED, run.error
    assert (
        pg15.scalar("SELECT count(*) FROM pg_indexes WHERE tablename = 'jobs' AND indexdef LIKE '%WHERE (NOT done)'")
        == 1
    )
