"""What the index advisor reads from a query's parse tree (pglast)."""

from __future__ import annotations

import pytest

from optimizer.tuners.querytree import TableRef, Unparseable, query_shape


def test_equality_range_join_constant_and_order_by_are_told_apart():
    shape = query_shape(
        'SELECT * FROM "My T" a JOIN b ON a.id = b.a_id WHERE a.x = $1 AND b.y > $2 AND a.d IS NULL '
        "AND a.z IN ($3, $4) AND a.flag AND a.w BETWEEN $5 AND $6 ORDER BY a.created DESC, a.id LIMIT $7"
    )
    assert shape.tables == {"a": TableRef(None, "My T"), "b": TableRef(None, "b")}
    assert shape.equality == [("a", "x"), ("a", "z")]
    assert shape.ranges == [("b", "y"), ("a", "w")]
    assert shape.joins == [("a", "id"), ("b", "a_id")]
    assert shape.constants == [("a", "d", "IS NULL"), ("a", "flag", "IS TRUE")]
    assert shape.order_by == [("a", "created", True), ("a", "id", False)]
    assert shape.has_limit and shape.params == 7


def test_parameters_and_constants_compared_by_equality_are_kept_with_their_place():
    shape = query_shape(
        "SELECT * FROM t WHERE status = 'lost' AND t.kind = $2::text AND n = 5 AND at > $1 AND z IN ($3)"
    )
    assert shape.parameters == [("t", "kind", 2)]  # the range and the IN list are no constant to learn
    assert shape.literals == [(None, "status", "lost"), (None, "n", "5")]


def test_or_branches_are_not_index_candidates_and_any_counts_as_equality():
    shape = query_shape("SELECT 1 FROM t WHERE (a = $1 OR b = $2) AND c = ANY($3) AND NOT archived")
    assert shape.equality == [(None, "c")]
    assert shape.constants == [(None, "archived", "IS FALSE")]


def test_updates_and_deletes_are_read_too():
    assert query_shape("UPDATE s.t SET x = $1 WHERE id = $2").tables == {"t": TableRef("s", "t")}
    assert query_shape("DELETE FROM t WHERE created_at < $1").ranges == [(None, "created_at")]


@pytest.mark.parametrize(
    "text", ["INSERT INTO t VALUES ($1)", "SELECT 1; SELECT 2", "SELEC nothing", "SELECT 1 UNION SELECT 2"]
)
def test_other_statements_are_refused(text):
    with pytest.raises(Unparseable):
        query_shape(text)
