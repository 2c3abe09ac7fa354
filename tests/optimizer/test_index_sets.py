"""The advised indexes as one set for the workload: write costs weighed against read savings, and
foreign keys served by an advised wider index (HypoPG, PostgreSQL 15)."""

from __future__ import annotations

import pytest

from optimizer.models import Recommendation
from tests.optimizer.conftest import advise_indexes, make_target, plant_workload

# Three shapes on a written table: each has its own best index, one wider index serves them all nearly as well.
SHAPES = [
    ("SELECT * FROM scans WHERE shipment_id = $1 ORDER BY scanned_at DESC LIMIT $2", 1000, 5000.0),
    ("SELECT count(*) FROM scans WHERE shipment_id = $1 AND device = $2", 1000, 5000.0),
    ("SELECT * FROM scans WHERE shipment_id = $1", 1000, 5000.0),
]


@pytest.fixture(scope="module")
def scans(pg15):
    # 200k rows inserted into a fresh database: its statistics show them all as this window's writes.
    pg15.execute(
        "DROP TABLE IF EXISTS scans",
        "DROP TABLE IF EXISTS shipments",
        "CREATE TABLE shipments (id int PRIMARY KEY)",
        "INSERT INTO shipments SELECT g FROM generate_series(0, 19999) g",
        "CREATE TABLE scans (id int PRIMARY KEY, shipment_id int REFERENCES shipments, device int, "
        "scanned_at timestamptz, note text)",
        "INSERT INTO scans SELECT g, (g::bigint * 7919) % 20000, g % 300, now() - g * interval '1 s', md5(g::text) "
        "FROM generate_series(1, 200000) g",
        "ANALYZE scans",
    )
    return pg15


def _advised(target) -> list[Recommendation]:
    return list(Recommendation.objects.filter(target=target, category="missing_index", status="open"))


def test_write_cost_leaves_out_an_index_another_advised_one_stands_in_for(db, scans):
    free = make_target(scans)
    plant_workload(free, SHAPES, database=scans.name)
    run = advise_indexes(free, index_write_us_per_row=0.0)
    assert run.evidence_before["left_out_for_writes"] == 0
    assert len(_advised(free)) == 2  # one index per shape that wins on its own (the prefix one merged)

    written = make_target(scans)
    plant_workload(written, SHAPES, database=scans.name)
    run = advise_indexes(written)
    assert run.evidence_before["left_out_for_writes"] == 1
    assert "left out of the set" in run.summary
    [kept] = _advised(written)
    assert kept.evidence["columns"][0] == "shipment_id"
    assert sorted(q["query"] for q in kept.evidence["queries"]) == sorted(s[0] for s in SHAPES)
    assert kept.evidence["write_cost_ms"] == pytest.approx(200_000 * 10 / 1000, rel=0.1)
    assert kept.evidence["read_saving_ms"] > kept.evidence["write_cost_ms"]
    assert run.evidence_before["advised_set_bytes"] == kept.evidence["size_bytes"]


def test_a_foreign_key_led_by_an_advised_index_gets_no_advice_of_its_own(db, scans):
    target = make_target(scans)
    advise_indexes(target)  # no workload: the key is unindexed
    assert Recommendation.objects.filter(target=target, category="fk_index").count() == 1
    plant_workload(target, SHAPES[:1], database=scans.name)
    advise_indexes(target)
    assert [r.evidence["columns"] for r in _advised(target)] == [["shipment_id", "scanned_at"]]
    fk = Recommendation.objects.get(target=target, category="fk_index")
    assert fk.status == Recommendation.Status.OBSOLETE
