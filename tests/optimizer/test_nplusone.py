"""The N+1 tuner: a lookup by key whose calls follow another query's rows, window by window."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
from django.utils import timezone

from monitoring.models import QueryStat, QueryText
from monitoring.services.collection import collect_target
from optimizer.models import OptimizationRun, Recommendation
from optimizer.services.runs import recommendation_apply_start, run_create, run_execute
from optimizer.tuners.n_plus_one import batched_rewrite, returns_rows
from tests.optimizer.conftest import make_target

API = "/api/v1/performance"
ORDERS = f"pp_n1_orders_{os.getpid()}"
LINES = f"pp_n1_lines_{os.getpid()}"
PRODUCTS = f"pp_n1_products_{os.getpid()}"
CUSTOMERS = f"pp_n1_customers_{os.getpid()}"
INVOICES = f"pp_n1_invoices_{os.getpid()}"

# Rows the parent returns per window (varying, so calls that follow them are told from steady traffic),
# and an unrelated pair with the same totals (63 a side) that does not move together.
PARENT_ROWS = [5, 12, 3, 20, 8, 15]
UNRELATED_ROWS = [6, 15, 9, 4, 18, 11]
UNRELATED_CALLS = [12, 9, 13, 10, 9, 10]
LATE_FROM = 3  # the invoice lookup follows the parent only in the last 3 windows: too few to tell


@pytest.fixture
def shop(pg18):
    pg18.execute(
        f"DROP TABLE IF EXISTS {INVOICES}, {LINES}, {ORDERS}, {PRODUCTS}, {CUSTOMERS}",
        f"CREATE TABLE {ORDERS} (id int PRIMARY KEY, batch int NOT NULL)",
        f"CREATE TABLE {LINES} (id serial PRIMARY KEY, order_id int NOT NULL REFERENCES {ORDERS}, sku text)",
        f"CREATE TABLE {INVOICES} (id serial PRIMARY KEY, order_ref int NOT NULL, total int)",
        f"CREATE TABLE {PRODUCTS} (id int PRIMARY KEY, grp int NOT NULL)",
        f"CREATE TABLE {CUSTOMERS} (id int PRIMARY KEY, name text)",
    )
    yield pg18
    pg18.execute(f"DROP TABLE IF EXISTS {INVOICES}, {LINES}, {ORDERS}, {PRODUCTS}, {CUSTOMERS}")


def _run(target, **params):
    run = run_create(tuner="n_plus_one", target=target, trigger="operator", actor=None, dry_run=False, params=params)
    run = run_execute(run_id=run.id)
    assert run.status == OptimizationRun.Status.SUCCEEDED, run.error
    return run


def test_a_lookup_run_per_parent_row_is_found_and_an_unrelated_pair_or_a_short_one_is_not(db, shop):
    with shop.connect() as conn:
        next_id = 1
        for window, rows in enumerate(PARENT_ROWS):
            ids = range(next_id, next_id + rows)
            next_id += rows
            series = "generate_series(%s::int, %s::int) g"
            conn.execute(f"INSERT INTO {ORDERS} SELECT g, %s::int FROM {series}", [window, ids[0], ids[-1]])
            conn.execute(f"INSERT INTO {LINES} (order_id, sku) SELECT g, 'a' FROM {series}", [ids[0], ids[-1]])
            conn.execute(
                f"INSERT INTO {PRODUCTS} SELECT g, %s::int FROM {series}",
                [window, 1000 * (window + 1), 1000 * (window + 1) + UNRELATED_ROWS[window] - 1],
            )
        target = make_target(shop)
        assert collect_target(target=target).ok  # the baseline: deltas start from here
        for window, (rows, unrelated_calls) in enumerate(zip(PARENT_ROWS, UNRELATED_CALLS, strict=True)):
            # The application: one query for the orders of a batch, then one query per order for its lines.
            orders = conn.execute(f"SELECT id FROM {ORDERS} WHERE batch = %s ORDER BY id", [window]).fetchall()
            assert len(orders) == rows
            for (order_id,) in orders:
                conn.execute(f"SELECT id, sku FROM {LINES} WHERE order_id = %s", [order_id]).fetchall()
                if window >= LATE_FROM:
                    conn.execute(f"SELECT total FROM {INVOICES} WHERE order_ref = %s", [order_id]).fetchall()
            # Elsewhere: a product list and customer lookups with the same totals, moving independently.
            conn.execute(f"SELECT id FROM {PRODUCTS} WHERE grp = %s", [window]).fetchall()
            for customer in range(unrelated_calls):
                conn.execute(f"SELECT name FROM {CUSTOMERS} WHERE id = %s", [customer]).fetchall()
            assert collect_target(target=target).ok

    run = _run(target)
    assert run.evidence_before["windows"] == len(PARENT_ROWS)
    found = {
        r.evidence["child"]["table"]: r for r in Recommendation.objects.filter(target=target, category="n_plus_one")
    }
    assert set(found) == {LINES}, found  # neither the customers (unrelated) nor the invoices (3 windows)
    advice = found[LINES]
    evidence = advice.evidence
    assert (
        evidence["child"]["column"] == "order_id" and f"FROM {LINES} WHERE order_id = $1" in evidence["child"]["query"]
    )
    assert f"FROM {ORDERS} WHERE batch = $1" in evidence["parent"]["query"]
    assert evidence["parent"]["tables"] == [f"public.{ORDERS}"] and evidence["foreign_key"] is True
    assert evidence["k"] == 1.0 and evidence["r"] == 1.0
    assert evidence["child_calls"] == PARENT_ROWS and evidence["parent_rows"] == PARENT_ROWS
    # 63 lookups become 6 batched queries: 57 round trips saved over 6 windows.
    assert evidence["round_trips_per_window"] == 9.5
    assert evidence["rewrite"].endswith(f"FROM {LINES} WHERE order_id = ANY($1)")
    assert advice.statements == [] and advice.statement == "" and advice.effort == "medium"
    assert "application's code" in advice.explanation and LINES in advice.title and ORDERS in advice.title
    with pytest.raises(Exception, match="advice only"):
        recommendation_apply_start(recommendation=advice, actor=None, trigger="api")

    # The invoice lookup followed the orders exactly, but in 3 windows only: found once 3 are enough.
    assert _run(target, min_windows=3).evidence_before["n_plus_one"] == 2
    late = Recommendation.objects.get(target=target, category="n_plus_one", evidence__child__table=INVOICES)
    assert late.evidence["child_calls"] == [0] * LATE_FROM + PARENT_ROWS[LATE_FROM:] and late.evidence["k"] == 1.0


def _plant(target, queries: dict[int, tuple[str, list[int], list[int]]]) -> None:
    """Snapshots of whole windows, one minute apart: queryid -> (text, calls per window, rows per window)."""
    start = timezone.now() - timedelta(minutes=30)
    for queryid, (text, calls, rows) in queries.items():
        QueryText.objects.create(target=target, queryid=queryid, database="", query=text)
        for i, (n_calls, n_rows) in enumerate(zip(calls, rows, strict=True)):
            QueryStat.objects.create(
                target=target,
                queryid=queryid,
                collected_at=start + timedelta(minutes=i),
                interval_seconds=60,
                calls=n_calls,
                total_time_ms=n_calls * 0.1,
                rows=n_rows,
                shared_blks_hit=0,
                shared_blks_read=0,
            )


def test_the_advice_is_listed_by_the_api_filter_and_shown_without_apply(
    db, pg18, anonymous_client, viewer_auth, operator_client
):
    target = make_target(pg18)
    rows = [40, 100, 25, 160, 70, 120, 10, 90]
    _plant(
        target,
        {
            1: ("SELECT id FROM shipments WHERE day = $1", [1] * 8, rows),
            2: ("SELECT * FROM parcels WHERE shipment_id = $1", [2 * n for n in rows], [2 * n for n in rows]),
            3: ("SELECT * FROM users WHERE id = $1", [100, 60, 90, 70, 110, 80, 60, 95], [1] * 8),  # steady-ish
        },
    )
    _run(target)
    advice = Recommendation.objects.get(target=target, category="n_plus_one")
    assert advice.evidence["k"] == 2.0 and advice.evidence["child"]["queryid"] == 2
    # 1,230 lookups in 8 one-minute windows become 8 queries: 152.75 a window, 219,960 a day.
    assert advice.evidence["round_trips_per_window"] == 152.8 and advice.evidence["round_trips_per_day"] == 219960
    assert "219,960 round trips a day" in advice.estimated_impact

    listed = anonymous_client.get(f"{API}/recommendations?category=n_plus_one", **viewer_auth).json()
    assert [r["id"] for r in listed] == [advice.id]
    report = anonymous_client.get(f"{API}/database/report?target={target.id}", **viewer_auth).json()
    assert [r["id"] for r in report["n_plus_one_advice"]] == [advice.id]

    html = operator_client.get(f"/optimizer/database/{target.id}/").content.decode()
    section = html.split('data-testid="n-plus-one-advice"', 1)[1].split("</section>", 1)[0]
    assert "Needs an application change" in section and "shipment_id = ANY($1)" in section
    assert 'data-testid="dismiss"' in section and 'data-testid="apply"' not in section


def test_batched_rewrite_turns_the_key_equality_into_any():
    assert batched_rewrite('SELECT * FROM "t" WHERE "Key" = $1 AND x = $2', "Key") == (
        'SELECT * FROM "t" WHERE "Key" = ANY($1) AND x = $2'
    )
    assert batched_rewrite("SELECT * FROM t l WHERE l.order_id=$3", "order_id") == (
        "SELECT * FROM t l WHERE l.order_id=ANY($3)"
    )
    assert batched_rewrite("SELECT * FROM t WHERE other_id = $1", "id") == ""


def test_a_write_without_returning_is_no_parent_since_its_rows_never_reach_the_application(db, pg18):
    target = make_target(pg18)
    rows = [40, 100, 25, 160, 70, 120, 10, 90]
    _plant(
        target,
        {
            # rows of an UPDATE count the rows it changed: the lookup cannot be looping over them
            1: ("UPDATE shipments SET seen = true WHERE day = $1", [1] * 8, rows),
            2: ("SELECT * FROM parcels WHERE shipment_id = $1", [2 * n for n in rows], [2 * n for n in rows]),
        },
    )
    _run(target)
    assert not Recommendation.objects.filter(target=target, category="n_plus_one").exists()


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("SELECT id FROM orders WHERE day = $1", True),
        ("  WITH recent AS (SELECT 1) SELECT * FROM recent", True),
        ("UPDATE t SET slot = $1 WHERE t.id = ANY($2) RETURNING t.id", True),
        ("UPDATE django_celery_beat_periodictask SET name = $1 WHERE id = $2", False),
        ("DELETE FROM sessions WHERE expires < $1", False),
        ("INSERT INTO events (kind) VALUES ($1)", False),
    ],
)
def test_only_statements_that_send_rows_back_can_be_parents(query, expected):
    assert returns_rows(query) is expected


def test_postgresqls_own_foreign_key_checks_are_no_lookups_of_the_application(db, pg18):
    target = make_target(pg18)
    rows = [40, 100, 25, 160, 70, 120, 10, 90]
    _plant(
        target,
        {
            1: ("INSERT INTO lines (order_id, sku) VALUES ($1, $2), ($3, $4) RETURNING id", [1] * 8, rows),
            # what ri_triggers.c runs per inserted row, as pg_stat_statements (track = all) shows it
            2: (
                'SELECT $2 FROM ONLY "public"."orders" x WHERE "id" OPERATOR(pg_catalog.=) $1 FOR KEY SHARE OF x',
                rows,
                rows,
            ),
        },
    )
    _run(target)
    assert not Recommendation.objects.filter(target=target, category="n_plus_one").exists()
