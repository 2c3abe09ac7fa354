"""The sequences tuner (PgHero's > 90 % check) against the embedded PostgreSQL 18 and this machine's PostgreSQL 15."""

from __future__ import annotations

import os

import pytest

from optimizer.models import OptimizationRun, Recommendation
from optimizer.services.runs import recommendation_apply_start, run_create, run_execute
from tests.optimizer.conftest import make_target

PARENT = f"pp_seq_orders_{os.getpid()}"
CHILD = f"pp_seq_lines_{os.getpid()}"
WIDE = f"pp_seq_wide_{os.getpid()}"


@pytest.fixture(params=["pg18", "pg15"])
def database(request):
    return request.getfixturevalue(request.param)


@pytest.fixture
def tables(database):
    database.execute(
        f"DROP TABLE IF EXISTS {CHILD}, {PARENT}",
        f"CREATE TABLE {PARENT} (id serial PRIMARY KEY)",
        f"CREATE TABLE {CHILD} (id bigserial PRIMARY KEY, order_id int REFERENCES {PARENT})",
    )
    yield database
    database.execute(f"DROP TABLE IF EXISTS {CHILD}, {PARENT}")


def _check(target):
    run = run_create(tuner="sequences", target=target, trigger="operator", actor=None, dry_run=False)
    run = run_execute(run_id=run.id)
    assert run.status == OptimizationRun.Status.SUCCEEDED, run.error
    return {r.evidence["sequence"]: r for r in Recommendation.objects.filter(target=target, status="open")}


def test_a_serial_key_near_its_end_is_advised_with_the_rewrite_for_its_table_and_foreign_keys(db, tables):
    tables.execute(f"SELECT setval('{PARENT}_id_seq', 2000000000)")  # 93 % of 2^31 - 1
    advice = _check(make_target(tables))
    found = advice[f"public.{PARENT}_id_seq"]
    assert found.category == "sequence" and found.priority == 93
    assert found.evidence["limit"] == 2**31 - 1 and found.evidence["last_value"] == 2_000_000_000
    # Widening the key rewrites tables under an exclusive lock: shown to run by hand, never applied.
    assert found.statements == []
    assert found.evidence["manual_statements"] == [
        f'ALTER TABLE "public"."{PARENT}" ALTER COLUMN "id" TYPE bigint',
        f'ALTER TABLE "public"."{CHILD}" ALTER COLUMN "order_id" TYPE bigint',
        f'ALTER SEQUENCE "public"."{PARENT}_id_seq" AS bigint',
    ]
    assert "ACCESS EXCLUSIVE" in found.explanation and "147,483,647 values left" in found.explanation
    with pytest.raises(Exception, match="advice only"):
        recommendation_apply_start(recommendation=found, actor=None, trigger="api")
    assert f"public.{CHILD}_id_seq" not in advice  # a bigint sequence at 1 is nowhere near its end


def test_an_integer_sequence_behind_a_bigint_key_is_fixed_by_apply(db, pg18):
    database = pg18
    database.execute(
        f"DROP TABLE IF EXISTS {WIDE}",
        f"DROP SEQUENCE IF EXISTS {WIDE}_id_seq",
        # An integer sequence behind a bigint key: only the sequence limits it.
        f"CREATE SEQUENCE {WIDE}_id_seq AS integer",
        f"CREATE TABLE {WIDE} (id bigint PRIMARY KEY DEFAULT nextval('{WIDE}_id_seq'))",
    )
    try:
        database.execute(f"SELECT setval('{WIDE}_id_seq', 2140000000)")
        target = make_target(database)
        found = _check(target)[f"public.{WIDE}_id_seq"]
        assert found.statements == [f'ALTER SEQUENCE "public"."{WIDE}_id_seq" AS bigint']
        assert found.evidence["manual_statements"] == []

        dry = run_execute(
            run_id=recommendation_apply_start(recommendation=found, actor=None, trigger="api", dry_run=True).id
        )
        assert dry.status == OptimizationRun.Status.SUCCEEDED and dry.statements[0]["dry_run"] is True
        sequence_type = "SELECT format_type(seqtypid, NULL) FROM pg_sequence WHERE seqrelid = %s::regclass"
        assert database.scalar(sequence_type, [f"{WIDE}_id_seq"]) == "integer"

        run = run_execute(run_id=recommendation_apply_start(recommendation=found, actor=None, trigger="api").id)
        assert run.status == OptimizationRun.Status.SUCCEEDED, run.error
        assert database.scalar(sequence_type, [f"{WIDE}_id_seq"]) == "bigint"
        assert f"public.{WIDE}_id_seq" not in _check(target)
    finally:
        database.execute(f"DROP TABLE IF EXISTS {WIDE}", f"DROP SEQUENCE IF EXISTS {WIDE}_id_seq")
