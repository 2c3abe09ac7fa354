"""slow_queries(): per-interval QueryStat deltas summed over a window, joined to their texts;
statement_windows(): the last windows side by side per query."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from core.errors import InvalidInput
from monitoring.models import QueryStat, QueryText, Target
from monitoring.selectors.statements import SlowQuery, slow_queries, statement_windows

pytestmark = pytest.mark.django_db

NOW = timezone.now().replace(microsecond=0)


@pytest.fixture
def target() -> Target:
    return Target.objects.create(name="pg", kind=Target.Kind.POSTGRES)


def _text(target: Target, queryid: int, query: str, database: str = "app") -> None:
    QueryText.objects.create(target=target, queryid=queryid, query=query, database=database)


def _stat(
    target: Target, queryid: int, at: datetime, *, calls: int, total: float, rows: int = 0, hit: int = 0, read: int = 0
) -> None:
    QueryStat.objects.create(
        target=target,
        queryid=queryid,
        collected_at=at,
        interval_seconds=10,
        calls=calls,
        total_time_ms=total,
        rows=rows,
        shared_blks_hit=hit,
        shared_blks_read=read,
    )


@pytest.fixture
def history(target: Target) -> Target:
    """Three queries: 1 is heavy in total, 2 slow per call, 3 called often and returning many rows."""
    _text(target, 1, "SELECT * FROM orders WHERE id = $1")
    _text(target, 2, "SELECT pg_sleep($1)")
    _text(target, 3, "SELECT id FROM items", database="shop")
    for minutes in (1, 2, 3):
        at = NOW - timedelta(minutes=minutes)
        _stat(target, 1, at, calls=100, total=500.0, rows=100, hit=90, read=10)
        _stat(target, 3, at, calls=1000, total=50.0, rows=5000, hit=0, read=0)
    _stat(target, 2, NOW - timedelta(minutes=2), calls=2, total=900.0, rows=2)
    # An hour ago, query 2 was the heaviest by far: outside the window, it must not count.
    _stat(target, 2, NOW - timedelta(hours=1), calls=50, total=99_000.0, rows=50)
    return target


def _ids(found: list[SlowQuery]) -> list[int]:
    return [q.queryid for q in found]


def test_sums_the_window_and_not_the_lifetime(history):
    found = slow_queries(target_id=history.id, start=NOW - timedelta(minutes=10), end=NOW)
    assert _ids(found) == [1, 2, 3]  # by total time: 1500, 900, 150
    first = found[0]
    assert first == SlowQuery(
        queryid=1,
        query="SELECT * FROM orders WHERE id = $1",
        database="app",
        calls=300,
        total_time_ms=1500.0,
        mean_time_ms=5.0,
        rows=300,
        shared_blks_hit=270,
        shared_blks_read=30,
        hit_ratio_percent=90.0,
    )
    assert found[1].calls == 2 and found[1].total_time_ms == 900.0  # not the 50 calls of an hour ago


def test_the_window_includes_both_ends_and_nothing_outside(history):
    at = NOW - timedelta(minutes=2)
    found = slow_queries(target_id=history.id, start=at, end=at)
    assert {q.queryid: q.calls for q in found} == {1: 100, 2: 2, 3: 1000}
    earlier = slow_queries(target_id=history.id, start=NOW - timedelta(hours=2), end=NOW - timedelta(minutes=30))
    assert _ids(earlier) == [2] and earlier[0].total_time_ms == 99_000.0


@pytest.mark.parametrize(
    ("order_by", "expected"),
    [("total_time", [1, 2, 3]), ("mean_time", [2, 1, 3]), ("calls", [3, 1, 2]), ("rows", [3, 1, 2])],
)
def test_orders_by_the_chosen_measure(history, order_by, expected):
    found = slow_queries(target_id=history.id, start=NOW - timedelta(minutes=10), end=NOW, order_by=order_by)
    assert _ids(found) == expected


def test_limit_keeps_the_top_ones(history):
    found = slow_queries(target_id=history.id, start=NOW - timedelta(minutes=10), end=NOW, order_by="calls", limit=1)
    assert _ids(found) == [3]


def test_hit_ratio_is_none_when_no_block_was_touched(history):
    found = slow_queries(target_id=history.id, start=NOW - timedelta(minutes=10), end=NOW)
    by_id = {q.queryid: q for q in found}
    assert by_id[3].hit_ratio_percent is None and by_id[3].database == "shop"
    assert by_id[2].hit_ratio_percent is None


def test_other_targets_are_not_mixed_in(history):
    other = Target.objects.create(name="other-pg", kind=Target.Kind.POSTGRES)
    _text(other, 1, "SELECT 'other'")
    _stat(other, 1, NOW - timedelta(minutes=1), calls=7, total=1.0)
    found = slow_queries(target_id=history.id, start=NOW - timedelta(minutes=10), end=NOW)
    assert [q.calls for q in found if q.queryid == 1] == [300]
    [only] = slow_queries(target_id=other.id, start=NOW - timedelta(minutes=10), end=NOW)
    assert only.query == "SELECT 'other'" and only.calls == 7


def test_a_stat_without_a_stored_text_still_shows(target):
    _stat(target, 42, NOW, calls=3, total=30.0)
    [found] = slow_queries(target_id=target.id, start=NOW - timedelta(minutes=1), end=NOW)
    assert found.queryid == 42 and found.query == "" and found.mean_time_ms == 10.0


def test_an_empty_window_gives_no_queries(target):
    assert slow_queries(target_id=target.id, start=NOW - timedelta(hours=1), end=NOW) == []


def test_an_unknown_order_is_rejected_naming_the_field(target):
    with pytest.raises(InvalidInput) as caught:
        slow_queries(target_id=target.id, start=NOW - timedelta(hours=1), end=NOW, order_by="total_time; DROP")
    assert caught.value.field == "order_by"
    assert "total_time, mean_time, calls, rows" in str(caught.value)


def test_a_limit_below_one_is_rejected(target):
    with pytest.raises(InvalidInput) as caught:
        slow_queries(target_id=target.id, start=NOW - timedelta(hours=1), end=NOW, limit=0)
    assert caught.value.field == "limit"


def test_statement_windows_line_up_the_last_windows_oldest_first_with_zero_where_a_query_is_missing(history):
    found = statement_windows(target_id=history.id, windows=2, since=NOW - timedelta(hours=2))
    assert found.windows == [NOW - timedelta(minutes=2), NOW - timedelta(minutes=1)]  # the last two of four
    assert found.calls == {1: [100, 100], 2: [2, 0], 3: [1000, 1000]}
    assert found.rows == {1: [100, 100], 2: [2, 0], 3: [5000, 5000]}
    assert found.interval_seconds == 10 and found.texts[3].database == "shop"
    older = statement_windows(target_id=history.id, windows=10, since=NOW - timedelta(minutes=30))
    assert len(older.windows) == 3 and older.calls[2] == [0, 2, 0]  # the snapshot an hour ago is too old
    with pytest.raises(InvalidInput, match="at least 1"):
        statement_windows(target_id=history.id, windows=0, since=NOW)
