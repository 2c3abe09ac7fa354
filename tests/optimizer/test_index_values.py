"""Constants normalization hid, learned from the target: pg_stats' rare most-common values and
pg_stat_activity samples, and the partial index on such a constant verified with HypoPG (PostgreSQL 15)."""

from __future__ import annotations

import pytest

from optimizer.models import Recommendation
from optimizer.services.sessions import open_session
from optimizer.tuners import index_values
from optimizer.tuners.indexes import WorkloadQuery
from optimizer.tuners.querytree import query_shape
from tests.optimizer.conftest import advise_indexes, make_target, plant_workload

LOST = "SELECT * FROM parcels WHERE status = $1 AND created_at > $2"


@pytest.fixture(scope="module")
def parcels(pg15):
    # 200k parcels, 1 in 1000 'lost'; created_at in no physical order (no index scan wins on the generic plan).
    pg15.execute(
        "DROP TABLE IF EXISTS parcels",
        "CREATE TABLE parcels (id int PRIMARY KEY, status text, created_at timestamptz, note text)",
        "INSERT INTO parcels SELECT g, CASE WHEN g % 1000 = 0 THEN 'lost' "
        "ELSE (ARRAY['new','sent','held','done'])[g % 4 + 1] END, "
        "now() - ((g::bigint * 7919) % 200000) * interval '1 min', md5(g::text) FROM generate_series(1, 200000) g",
        "ANALYZE parcels",
    )
    return pg15


def test_rare_most_common_values_and_sampled_constants_are_learned(db, parcels):
    query = WorkloadQuery(1, LOST, 100.0, 10, 10.0, query_shape(LOST))
    owners = {1: {(None, "status"): ("public", "parcels"), (None, "created_at"): ("public", "parcels")}}
    with parcels.connect() as other, open_session(target=make_target(parcels), dry_run=True) as session:
        rare = index_values.rare_values(
            session, {("public", "parcels", "status"), ("public", "parcels", "created_at")}, rare_fraction=0.05
        )
        assert list(rare) == [("public", "parcels", "status")]  # created_at has no few distinct values
        assert [value for value, _ in rare[("public", "parcels", "status")]] == ["lost"]
        [from_stats] = index_values.learn([query], owners, [], rare)[1]
        assert (from_stats.value, from_stats.source, from_stats.number) == ("lost", "pg_stats", 1)
        assert from_stats.frequency == pytest.approx(0.001, rel=0.5)

        # Another session ran the statement with its constants: they come before pg_stats' guesses.
        other.execute("SELECT * FROM parcels WHERE status = 'held' AND created_at > '2020-01-01'").fetchall()
        samples = index_values.activity_samples(session, samples=1, interval_s=0)
        [sampled] = index_values.learn([query], owners, samples, rare)[1]
        assert (sampled.value, sampled.source) == ("held", "pg_stat_activity")

    variant = index_values.specialize(query, from_stats)
    assert variant.text == "SELECT * FROM parcels WHERE status = 'lost' AND created_at > $1"
    assert variant.variant == "status = 'lost'" and variant.key == (1, "status = 'lost'")


def test_a_partial_index_on_a_learned_constant_is_advised_with_its_evidence(db, parcels):
    target = make_target(parcels)
    plant_workload(target, [(LOST, 2000, 80000.0)], database=parcels.name)
    # With the generic plan alone, no candidate saves enough.
    blind = advise_indexes(target, rare_value_fraction=0.0)
    assert blind.evidence_before["advised"] == 0 and blind.evidence_before["learned_variants"] == 0

    run = advise_indexes(target)
    assert run.evidence_before["learned_variants"] == 1
    advice = Recommendation.objects.get(target=target, category="missing_index", status="open")
    assert advice.verified
    assert advice.statement.endswith('ON "public"."parcels" ("created_at") WHERE "status" = \'lost\'')
    assert advice.evidence["predicate"] == "status = 'lost'"
    [served] = advice.evidence["queries"]
    assert served["query"] == "SELECT * FROM parcels WHERE status = 'lost' AND created_at > $1"
    assert (served["constant"], served["constant_source"]) == ("status = 'lost'", "pg_stats")
    assert served["mean_time_ms"] == 40.0 and served["cost_after"] * 10 < served["cost_before"]
    assert advice.evidence["size"].endswith(("KB", "bytes")) and advice.evidence["size_bytes"] > 0
    assert "learned from pg_stats" in advice.explanation and advice.evidence["set_size"] in advice.explanation
    assert f"~{advice.evidence['size']}" in advice.estimated_impact
