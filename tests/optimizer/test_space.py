"""The space tuner (sizes per day, bloat, REINDEX CONCURRENTLY / VACUUM advice), its selector, chart and API,
against the embedded PostgreSQL 18 (catalog estimates) and this machine's PostgreSQL 15 (with pgstattuple)."""

from __future__ import annotations

import os
from datetime import date, timedelta

import pytest
from django.utils import timezone

from optimizer.charts import space_figure
from optimizer.models import OptimizationRun, Recommendation, RelationSize
from optimizer.selectors import space_report
from optimizer.services.runs import recommendation_apply_start, run_create, run_execute
from optimizer.services.space import relation_sizes_record
from tests.optimizer.conftest import make_dead_tuples, make_target

SCHEMA = f"pp_space_{os.getpid()}"
ROWS = 20_000
# Small test tables: advise whatever is 30 % bloated, however few bytes that is.
PARAMS = {"min_bloat_mb": 0, "bloat_percent": 30.0}


@pytest.fixture(params=["pg18", "pg15"])
def database(request):
    database = request.getfixturevalue(request.param)
    if request.param == "pg15":  # measured, not estimated, where the extension is installed
        database.execute("CREATE EXTENSION IF NOT EXISTS pgstattuple")
    yield database
    database.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE", "DROP EXTENSION IF EXISTS pgstattuple")


def _bloated(database, table: str, *, vacuum: bool = False) -> None:
    """A table of 20,000 rows with 80 % of them deleted and fresh statistics (ANALYZE, never VACUUM unless asked)."""
    make_dead_tuples(database, SCHEMA, table, rows=ROWS, deleted=ROWS * 4 // 5)
    database.execute(f"{'VACUUM ANALYZE' if vacuum else 'ANALYZE'} {SCHEMA}.{table}")


def _run(target, **params):
    run = run_execute(
        run_id=run_create(
            tuner="space", target=target, trigger="operator", actor=None, dry_run=False, params={**PARAMS, **params}
        ).id
    )
    assert run.status == OptimizationRun.Status.SUCCEEDED, run.error
    return run, {r.evidence["relation"]: r for r in Recommendation.objects.filter(target=target, status="open")}


def test_a_table_made_bloated_shows_bloat_and_gets_a_vacuum(db, database):
    _bloated(database, "orders")
    target = make_target(database)
    run, advice = _run(target)

    source = "pgstattuple" if database.version < 180000 else "estimate"
    table = RelationSize.objects.get(target=target, schema=SCHEMA, name="orders")
    assert table.kind == "table" and table.day == timezone.localdate() and table.rows == ROWS // 5
    assert table.bloat_source == source
    assert table.bloat_bytes > 0.6 * table.relation_bytes  # 80 % of the rows are dead
    assert table.bytes > table.relation_bytes  # with its primary key

    found = advice[f"{SCHEMA}.orders"]
    assert found.category == "bloat" and found.evidence["bloat_source"] == source
    assert found.statements == [f'VACUUM (ANALYZE) "{SCHEMA}"."orders"']
    assert found.evidence["manual_statements"] == [f'VACUUM FULL "{SCHEMA}"."orders"']
    assert "ACCESS EXCLUSIVE" in found.explanation and "pg_repack" in found.explanation
    assert found.verified is (source == "pgstattuple")
    assert (run.evidence_before["measured_by_pgstattuple"] > 0) is (source == "pgstattuple")


def test_a_bloated_index_gets_reindex_concurrently_which_apply_runs(db, database):
    _bloated(database, "lines", vacuum=True)  # VACUUM empties the index pages but keeps them
    target = make_target(database)
    _, advice = _run(target)
    index = RelationSize.objects.get(target=target, schema=SCHEMA, name="lines_pkey")
    assert index.kind == "index" and index.parent == "lines" and index.bloat_bytes > 0.6 * index.relation_bytes

    found = advice[f"{SCHEMA}.lines_pkey"]
    assert found.statements == [f'REINDEX INDEX CONCURRENTLY "{SCHEMA}"."lines_pkey"']
    # The table's space is free already (vacuumed): advice to rewrite it by hand, nothing to apply.
    assert advice[f"{SCHEMA}.lines"].statements == []

    apply = run_execute(run_id=recommendation_apply_start(recommendation=found, actor=None, trigger="api").id)
    assert apply.status == OptimizationRun.Status.SUCCEEDED, apply.error
    assert apply.evidence_after["index_bytes"] < 0.5 * apply.evidence_before["index_bytes"]
    _, advice = _run(target)
    assert f"{SCHEMA}.lines_pkey" not in advice


def test_a_second_run_the_same_day_replaces_the_days_sizes(db, pg18):
    pg18.execute(
        f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}",
        f"CREATE TABLE {SCHEMA}.events (id int PRIMARY KEY, body text)",
    )
    try:
        target = make_target(pg18)
        _run(target)
        first = RelationSize.objects.get(target=target, schema=SCHEMA, name="events")
        pg18.execute(f"INSERT INTO {SCHEMA}.events SELECT g, repeat('x', 200) FROM generate_series(1, 5000) g")
        _run(target)
        second = RelationSize.objects.get(target=target, schema=SCHEMA, name="events")
        assert second.pk == first.pk and second.bytes > first.bytes
    finally:
        pg18.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")


def _plant(target, days: int, *, start: int, per_day: int, name: str = "events") -> None:
    today = timezone.localdate()
    for back in range(days - 1, -1, -1):
        size = start + per_day * (days - 1 - back)
        row = {"schema": "public", "name": name, "kind": "table", "bytes": size, "relation_bytes": size, "rows": 1}
        relation_sizes_record(target=target, rows=[row], day=today - timedelta(days=back))


def test_growth_per_day_and_forecast_come_from_the_daily_sizes(db, pg18):
    target = make_target(pg18)
    relation_sizes_record(
        target=target,
        rows=[{"schema": "public", "name": "old", "kind": "table", "bytes": 1, "relation_bytes": 1, "rows": 1}],
        day=date(2000, 1, 1),  # past the retention: deleted by the next reading
    )
    _plant(target, 10, start=1_000_000, per_day=100_000)
    _plant(target, 10, start=5_000_000, per_day=0, name="settled")
    assert not RelationSize.objects.filter(target=target, name="old").exists()

    report = space_report(target=target, days=30, until_bytes=7_000_000)
    growing = next(r for r in report.relations if r.name == "events")
    assert growing.bytes == 1_900_000 and growing.growth_per_day == pytest.approx(100_000)
    assert growing.bytes_in_30_days == pytest.approx(4_900_000)
    settled = next(r for r in report.relations if r.name == "settled")
    assert settled.growth_per_day == pytest.approx(0) and settled.bytes_in_30_days == pytest.approx(5_000_000)
    assert [r.name for r in report.relations] == ["settled", "events"]  # largest first
    assert report.total_bytes == 6_900_000 and report.total_growth_per_day == pytest.approx(100_000)
    assert report.days_until == pytest.approx(1.0)  # 6.9 MB + 100 KB a day reaches 7 MB tomorrow

    figure = space_figure(report)
    assert figure["data"][0]["y"][-1] == 6_900_000 and len(figure["data"][0]["x"]) == 10


def test_the_size_chart_of_a_single_reading_spans_days_not_fractions_of_a_second(db, pg18):
    target = make_target(pg18)
    _plant(target, 1, start=2_000_000, per_day=0)
    xaxis = space_figure(space_report(target=target, days=30))["layout"]["xaxis"]
    today = timezone.localdate()
    assert xaxis["tickformat"] == "%b %d" and xaxis["dtick"] == 86_400_000
    assert xaxis["range"] == [(today - timedelta(days=3)).isoformat(), (today + timedelta(days=3)).isoformat()]


def test_the_space_api_gives_viewers_sizes_growth_forecast_and_bloat(db, anonymous_client, viewer_auth, pg18):
    target = make_target(pg18)
    _plant(target, 5, start=2_000_000, per_day=50_000)
    url = f"/api/v1/performance/database/space?target={target.name}&limit=5&until_bytes=3000000"
    response = anonymous_client.get(url, **viewer_auth)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["target_id"] == target.id and body["day"] == timezone.localdate().isoformat()
    assert body["total_bytes"] == 2_200_000 and body["days_until"] == pytest.approx(16.0)
    assert [t["bytes"] for t in body["totals"]] == [2_000_000, 2_050_000, 2_100_000, 2_150_000, 2_200_000]
    (relation,) = body["relations"]
    assert relation["schema_name"] == "public" and relation["name"] == "events" and relation["kind"] == "table"
    assert relation["growth_per_day"] == pytest.approx(50_000) and relation["bytes_in_30_days"] == pytest.approx(
        3_700_000
    )
    assert relation["bloat_bytes"] is None and relation["bloat_percent"] is None

    assert anonymous_client.get(url).status_code == 401
    bad = anonymous_client.get(f"/api/v1/performance/database/space?target={target.id}&days=1", **viewer_auth)
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "days"]


def test_applying_bloat_advice_is_for_operators_and_a_dry_run_only_records_it(
    db, anonymous_client, viewer_auth, operator_auth, pg18
):
    _bloated(pg18, "orders")
    try:
        target = make_target(pg18)
        _, advice = _run(target)
        found = advice[f"{SCHEMA}.orders"]
        response = anonymous_client.post(f"/api/v1/performance/recommendations/{found.id}/apply", **viewer_auth)
        assert response.status_code == 403 and "operator" in response.json()["detail"]

        dry = run_execute(
            run_id=recommendation_apply_start(recommendation=found, actor=None, trigger="api", dry_run=True).id
        )
        assert dry.status == OptimizationRun.Status.SUCCEEDED
        assert dry.statements == [{"statement": f'VACUUM (ANALYZE) "{SCHEMA}"."orders"', "dry_run": True}]
        assert pg18.scalar(f"SELECT n_dead_tup FROM pg_stat_user_tables WHERE relid = '{SCHEMA}.orders'::regclass") > 0
    finally:
        pg18.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")


def test_the_database_page_shows_the_largest_relations_with_growth_bloat_and_the_chart(viewer_client, pg18):
    target = make_target(pg18)
    _plant(target, 3, start=3 * 1024 * 1024, per_day=1024 * 1024)
    RelationSize.objects.filter(target=target, day=timezone.localdate()).update(bloat_bytes=2 * 1024 * 1024)
    response = viewer_client.get(f"/optimizer/database/{target.id}/")
    assert response.status_code == 200
    html = response.content.decode()
    section = html[html.index('data-testid="space"') :]
    assert "public.events" in section and "5.0\xa0MB" in section  # size
    assert "1.0\xa0MB" in section and "35.0\xa0MB" in section  # growth per day, in 30 days
    assert "2.0\xa0MB (40.0 %" in section  # bloat
    assert 'data-testid="space-chart"' in section and "vendor/plotly.min.js" in html
