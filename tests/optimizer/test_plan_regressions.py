"""Plan regressions: the plan_capture tuner takes the generic plans of the top queries as the role that
runs them (with that role's settings), stores them, and a changed plan that got slower is recorded
once, with an event alert that reaches the notification queue. Real PostgreSQL 18 (pg_stat_statements
preloaded) and 15 (the PREPARE path of the generic plan)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from django.utils import timezone
from psycopg import sql

from alerts.models import Alert, NotificationItem
from alerts.services.defaults import rules_install_defaults
from optimizer.models import PlanCapture, PlanRegression
from optimizer.services.runs import scheduled_runs
from optimizer.tuners.plans import capture_plan, plan_fingerprint
from tests.alerts.conftest import make_channel
from tests.optimizer.conftest import Database, make_target

API = "/api/v1/performance/database"
ROLE = f"pp_plan_app_{os.getpid()}"
PASSWORD = "plan-app-secret"
TABLE = "plan_orders"
QUERY = f"SELECT count(*) FROM {TABLE} WHERE customer_id = $1"
NO_INDEX_SETTINGS = ("enable_indexscan", "enable_bitmapscan", "enable_indexonlyscan")


def _as_role(database: Database) -> str:
    parts = urlsplit(database.url)
    return urlunsplit(parts._replace(netloc=f"{ROLE}:{PASSWORD}@{parts.hostname}:{parts.port or 5432}"))


def _index_names(plan) -> set[str]:
    def walk(node):
        names = {node["Index Name"]} if "Index Name" in node else set()
        for child in node.get("Plans", ()):
            names |= walk(child)
        return names

    return walk(plan[0]["Plan"])


@pytest.fixture(scope="module", params=["pg18", "pg15"])
def app(request) -> Iterator[Database]:
    """A table with an index on customer_id, read by a role of its own (cluster-wide, dropped after)."""
    database: Database = request.getfixturevalue(request.param)
    role, table = sql.Identifier(ROLE), sql.Identifier(TABLE)
    with database.connect() as conn:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
        if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [ROLE]).fetchone():
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(role, sql.Literal(PASSWORD)))
        conn.execute(sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, customer_id int, note text)").format(table))
        conn.execute(
            sql.SQL("INSERT INTO {} SELECT g, g % 2000, md5(g::text) FROM generate_series(1, 60000) g").format(table)
        )
        conn.execute(sql.SQL("CREATE INDEX plan_orders_customer ON {} (customer_id)").format(table))
        conn.execute(sql.SQL("VACUUM ANALYZE {}").format(table))
        conn.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(table, role))
    yield database
    with database.connect() as conn:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
        conn.execute(sql.SQL("ALTER ROLE {} RESET ALL").format(role))


@pytest.fixture(scope="session", autouse=True)
def _role_dropped() -> Iterator[None]:
    yield
    from tests.optimizer.conftest import LOCAL_PG15_ADMIN_URL, _embedded_url

    for admin in (_embedded_url("postgres"), LOCAL_PG15_ADMIN_URL):
        try:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(ROLE)))
        except psycopg.Error:
            pass  # still owning objects in a database another test keeps: dropped with that database


def _workload(database: Database, calls: int = 40) -> None:
    """The application: logs in as its role (so ALTER ROLE ... SET applies) and runs the query."""
    with psycopg.connect(_as_role(database), autocommit=True) as conn:
        for number in range(calls):
            conn.execute(f"SELECT count(*) FROM {TABLE} WHERE customer_id = %s", [number * 7 % 2000])


def _reset_statistics(database: Database) -> None:
    """Forget the role's pg_stat_statements entries, so earlier tests' calls weigh on no mean here."""
    database.scalar("SELECT pg_stat_statements_reset((SELECT oid FROM pg_roles WHERE rolname = %s))", [ROLE])


def _capture(target) -> list[PlanCapture]:
    (run,) = scheduled_runs(tuner="plan_capture", target_id=target.id, dry_run=True, params={"max_queries": 500})
    assert run.status == "succeeded", run.error
    return list(PlanCapture.objects.filter(target=target, role=ROLE, query__contains=TABLE))


def test_the_plan_follows_the_roles_settings_inside_a_rolled_back_transaction(app):
    with app.connect() as conn:
        plan, settings = capture_plan(conn, role=ROLE, query=QUERY)
        assert settings == {} and _index_names(plan) == {"plan_orders_customer"}
        for name in NO_INDEX_SETTINGS:
            conn.execute(sql.SQL("ALTER ROLE {} SET {} = off").format(sql.Identifier(ROLE), sql.Identifier(name)))
        try:
            changed, settings = capture_plan(conn, role=ROLE, query=QUERY)
        finally:
            conn.execute(sql.SQL("ALTER ROLE {} RESET ALL").format(sql.Identifier(ROLE)))
        assert settings == dict.fromkeys(NO_INDEX_SETTINGS, "off")
        assert _index_names(changed) == set() and plan_fingerprint(changed) != plan_fingerprint(plan)
        # Nothing stays behind in the session: the role and its settings were local to the rolled back transaction.
        assert conn.execute("SELECT current_user = session_user, current_setting('enable_indexscan')").fetchone() == (
            True,
            "on",
        )


def test_the_fingerprint_ignores_costs_and_estimates(app):
    with app.connect() as conn:
        plan, _ = capture_plan(conn, role=ROLE, query=QUERY)
    scaled = [{"Plan": {**plan[0]["Plan"], "Total Cost": 1e9, "Plan Rows": 12345}}]
    assert plan_fingerprint(scaled) == plan_fingerprint(plan)


@pytest.mark.django_db(transaction=True)
def test_a_dropped_index_is_a_regression_recorded_once_with_an_alert_in_the_notification_queue(pg18, app):
    if app is not pg18:
        pytest.skip("pg_stat_statements is preloaded on the embedded PostgreSQL 18 only")
    rules_install_defaults()
    channel = make_channel("http://127.0.0.1:9/slack", group_wait_seconds=0)
    target = make_target(pg18)
    _reset_statistics(pg18)
    _workload(pg18)
    (first,) = _capture(target)
    assert first.role == ROLE and first.calls_total >= 40 and "plan_orders_customer" in str(first.plan)

    _workload(pg18)
    captures = _capture(target)
    assert len({c.fingerprint for c in captures}) == 1  # same plan: no regression
    assert not PlanRegression.objects.exists() and not Alert.objects.exists()

    with pg18.connect() as conn:
        conn.execute("DROP INDEX plan_orders_customer")
    try:
        _workload(pg18)
        _capture(target)
        regression = PlanRegression.objects.get()
        assert (regression.target_id, regression.role, regression.before_id) == (target.id, ROLE, captures[0].id)
        assert regression.after.fingerprint != regression.before.fingerprint
        assert "plan_orders_customer" not in str(regression.after.plan)
        assert regression.mean_after_ms > 1.5 * regression.mean_before_ms
        alert = Alert.objects.get(rule__builtin_key="plan_regression")
        assert (alert.state, alert.severity, alert.target_id) == ("firing", "warning", target.id)
        assert alert.labels["role"] == ROLE and alert.labels["queryid"] == str(regression.queryid)
        assert "mean time rose" in alert.message
        assert NotificationItem.objects.filter(alert=alert, notification__channel=channel).exists()

        _workload(pg18)
        _capture(target)  # still the new plan: the change was told once
        assert PlanRegression.objects.count() == 1
    finally:
        with pg18.connect() as conn:
            conn.execute(f"CREATE INDEX IF NOT EXISTS plan_orders_customer ON {TABLE} (customer_id)")


@pytest.mark.django_db(transaction=True)
def test_a_role_setting_that_turns_index_scans_off_is_a_regression(pg18, app):
    if app is not pg18:
        pytest.skip("pg_stat_statements is preloaded on the embedded PostgreSQL 18 only")
    target = make_target(pg18)
    _reset_statistics(pg18)
    _workload(pg18)
    _capture(target)
    with pg18.connect() as conn:
        for name in NO_INDEX_SETTINGS:
            conn.execute(sql.SQL("ALTER ROLE {} SET {} = off").format(sql.Identifier(ROLE), sql.Identifier(name)))
    try:
        _workload(pg18)
        _capture(target)
    finally:
        with pg18.connect() as conn:
            conn.execute(sql.SQL("ALTER ROLE {} RESET ALL").format(sql.Identifier(ROLE)))
    regression = PlanRegression.objects.get(target=target)
    assert regression.after.settings == dict.fromkeys(NO_INDEX_SETTINGS, "off")
    assert "Seq Scan" in str(regression.after.plan) and regression.mean_after_ms > regression.mean_before_ms


def test_the_api_lists_a_targets_regressions_and_shows_both_plans(db, app, anonymous_client, viewer_auth):
    target = make_target(app)
    with app.connect() as conn:
        plan, _ = capture_plan(conn, role=ROLE, query=QUERY)
    common = {"target": target, "queryid": 42, "role": ROLE, "query": QUERY, "plan": plan}
    before = PlanCapture.objects.create(
        **common, fingerprint="a" * 64, captured_at="2026-01-01T00:00Z", calls_total=10, total_time_ms_total=1,
        mean_time_ms=0.1,
    )  # fmt: skip
    after = PlanCapture.objects.create(
        **common, fingerprint="b" * 64, captured_at="2026-01-01T00:15Z", calls_total=20, total_time_ms_total=31,
        mean_time_ms=3.0,
    )  # fmt: skip
    regression = PlanRegression.objects.create(
        target=target, queryid=42, role=ROLE, query=QUERY, before=before, after=after, detected_by=after,
        mean_before_ms=0.1, mean_after_ms=3.0, detected_at=after.captured_at,
    )  # fmt: skip
    listed = anonymous_client.get(f"{API}/plan-regressions", {"target": target.name}, **viewer_auth)
    assert listed.status_code == 200, listed.content
    (row,) = listed.json()
    assert (row["id"], row["role"], row["slowdown"], row["after"]["fingerprint"]) == (
        regression.id,
        ROLE,
        30.0,
        "b" * 64,
    )
    assert "plan" not in row["before"]
    detail = anonymous_client.get(f"{API}/plan-regressions/{regression.id}", **viewer_auth)
    assert detail.status_code == 200
    assert detail.json()["before"]["nodes"][0]["node_type"] and detail.json()["after"]["plan"] == plan
    unknown = anonymous_client.get(f"{API}/plan-regressions", {"target": "no-such-db"}, **viewer_auth)
    assert unknown.status_code == 400 and unknown.json()["field"] == "target"
    assert anonymous_client.get(f"{API}/plan-regressions/999999", **viewer_auth).status_code == 404
    assert anonymous_client.get(f"{API}/plan-regressions").status_code == 401


def test_the_database_page_lists_plan_changes_and_links_each_to_both_plans(db, app, viewer_client):
    from tests.e2e.pages import seed_plan_regression

    target = make_target(app)
    regression = seed_plan_regression(target, now=timezone.now())
    page = viewer_client.get(f"/optimizer/database/{target.id}/").content.decode()
    assert f'href="/optimizer/plan-regressions/{regression.id}/"' in page
    detail = viewer_client.get(f"/optimizer/plan-regressions/{regression.id}/").content.decode()
    assert detail.count('data-testid="plan-tree"') == 2 and "orders_customer_id_idx" in detail
    assert "enable_indexscan=off" in detail and "4.000 ms" in detail


def test_captures_older_than_a_week_are_pruned_unless_a_regression_shows_them(db, pg18):
    from datetime import timedelta

    from optimizer.services.plan_regressions import plan_captures_record
    from tests.e2e.pages import seed_plan_regression

    target = make_target(pg18)
    old = timezone.now() - timedelta(days=8)
    regression = seed_plan_regression(target, now=old)
    plain = {"target": target, "queryid": 7, "role": ROLE, "query": QUERY, "plan": regression.before.plan}
    stale = PlanCapture.objects.create(**plain, fingerprint="c" * 64, captured_at=old, calls_total=1,
                                       total_time_ms_total=1, mean_time_ms=1)  # fmt: skip
    recent = PlanCapture.objects.create(**plain, fingerprint="c" * 64, captured_at=timezone.now(), calls_total=2,
                                        total_time_ms_total=2, mean_time_ms=1)  # fmt: skip
    assert plan_captures_record(target=target, snapshots=[]) == []
    assert not PlanCapture.objects.filter(pk=stale.pk).exists()
    assert set(PlanCapture.objects.filter(target=target).values_list("pk", flat=True)) == {
        regression.before_id,
        regression.after_id,
        recent.pk,
    }


def _snapshot(queryid: int, fingerprint: str, calls: int, total_ms: float):
    from optimizer.tuners.plans import PlanSnapshot

    plan = [{"Plan": {"Node Type": "Result"}}]
    return PlanSnapshot(queryid, ROLE, QUERY, calls, total_ms, plan, fingerprint * 64)


def test_a_change_not_slower_yet_is_told_at_the_next_capture_and_a_small_rise_never(db, pg18):
    from optimizer.services.plan_regressions import plan_captures_record

    target = make_target(pg18)
    record = lambda *snapshots: plan_captures_record(target=target, snapshots=list(snapshots))  # noqa: E731
    # Query 1: 100 calls at 0.1 ms; the plan changes while the workload still ran the old one; then 5 ms.
    # Query 2: 1.0 ms, then 1.4 ms on a new plan: under the 50 % threshold.
    assert record(_snapshot(1, "a", 100, 10.0), _snapshot(2, "a", 100, 100.0)) == []
    assert record(_snapshot(1, "b", 110, 11.0), _snapshot(2, "b", 110, 114.0)) == []
    (regression,) = record(_snapshot(1, "b", 120, 61.0), _snapshot(2, "b", 120, 128.0))
    first, second, third = PlanCapture.objects.filter(target=target, queryid=1).order_by("captured_at", "id")
    assert (regression.before, regression.after, regression.detected_by) == (first, second, third)
    assert (regression.mean_before_ms, regression.mean_after_ms) == (0.1, 5.0)
    assert [c.mean_time_ms for c in (first, second, third)] == [0.1, 0.1, 5.0]
    assert record(_snapshot(1, "b", 130, 111.0), _snapshot(2, "b", 130, 142.0)) == []  # told once
