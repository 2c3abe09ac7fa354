"""The plan tree (optimizer.plans) from real EXPLAIN output of this machine's PostgreSQL 15."""

from __future__ import annotations

import os

import pytest

from optimizer.plans import plan_tree

TABLE = f"plans_pairs_{os.getpid()}"


@pytest.fixture
def pairs(pg15):
    pg15.execute(
        f"DROP TABLE IF EXISTS {TABLE}",
        f"CREATE TABLE {TABLE} (id int PRIMARY KEY, x int, y int)",
        f"INSERT INTO {TABLE} SELECT g, g % 100, g % 100 FROM generate_series(1, 5000) g",
        f"ANALYZE {TABLE}",
    )
    yield pg15
    pg15.execute(f"DROP TABLE IF EXISTS {TABLE}")


def _explain(database, options: str, query: str):
    with database.connect() as conn:
        return conn.execute(f"EXPLAIN ({options}, FORMAT JSON) {query}").fetchone()[0]


def test_analyzed_nodes_carry_exclusive_times_that_add_up_and_a_flagged_misestimate(pairs):
    # x = y holds on every row, but the planner guesses 0.5 %: an under-estimate of 200 times.
    query = f"SELECT a.x, count(*) FROM {TABLE} a JOIN {TABLE} b ON b.id = a.id WHERE a.x = a.y GROUP BY a.x"
    tree = plan_tree(_explain(pairs, "ANALYZE, BUFFERS", query))
    assert tree.analyzed and tree.execution_time_ms > 0
    root = tree.nodes[0]
    assert sum(n.exclusive_time_ms for n in tree.nodes) == pytest.approx(root.total_time_ms, rel=0.02, abs=0.05)
    assert tree.worst is max(tree.nodes, key=lambda n: n.exclusive_time_ms)
    assert [n.depth for n in tree.nodes][:2] == [0, 1]
    scan = next(n for n in tree.nodes if n.detail.startswith(f"on {TABLE} a") and "filter" in n.detail)
    assert scan.actual_rows == 5000 and scan.estimated_rows < 100
    assert scan.badly_estimated and scan.notes == [f"rows under-estimated {scan.misestimate_factor:.0f} times"]
    assert scan.shared_hit is not None


def test_without_analyze_the_worst_node_is_the_one_with_the_largest_cost_of_its_own(pairs):
    tree = plan_tree(_explain(pairs, "COSTS", f"SELECT * FROM {TABLE} a JOIN {TABLE} b USING (x) ORDER BY a.id"))
    assert not tree.analyzed and all(n.actual_rows is None for n in tree.nodes)
    assert tree.worst is max(tree.nodes, key=lambda n: n.exclusive_cost)


def test_a_node_that_never_ran_has_no_misestimate_and_text_that_is_not_a_plan_is_refused():
    child = {"Node Type": "Seq Scan", "Plan Rows": 10, "Total Cost": 4, "Actual Loops": 0, "Actual Rows": 0}
    root = {"Node Type": "Append", "Plan Rows": 10, "Total Cost": 5, "Actual Loops": 1, "Actual Rows": 0}
    plan = [{"Plan": {**root, "Actual Total Time": 0.01, "Plans": [{**child, "Actual Total Time": 0}]}}]
    never = plan_tree(plan).nodes[1]
    assert never.never_executed and never.misestimate is None
    with pytest.raises(ValueError, match="no Plan"):
        plan_tree([{"Query Text": "x"}])
