"""Reading pg_stat_statements history: the slowest normalized queries of a target over a window.

QueryStat rows are per-interval deltas (monitoring.services.collection), so summing those collected
in a window gives what the queries cost in that window, not over the server's lifetime.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db.models import DateTimeField, DurationField, F, FloatField, Func, Sum, Value
from django.db.models.functions import Cast, NullIf

from core.errors import InvalidInput
from monitoring.models import QueryStat, QueryText

# order_by value -> the aggregate it sorts on, largest first
ORDERINGS = {
    "total_time": "sum_total_time_ms",
    "mean_time": "mean_time_ms",
    "calls": "sum_calls",
    "rows": "sum_rows",
}


def _sums() -> dict[str, Sum]:
    """What a set of snapshots cost: the sums of their deltas."""
    return {
        f"sum_{name}": Sum(name) for name in ("calls", "total_time_ms", "rows", "shared_blks_hit", "shared_blks_read")
    }


@dataclass(frozen=True)
class SlowQuery:
    queryid: int
    query: str
    database: str
    calls: int
    total_time_ms: float
    mean_time_ms: float
    rows: int
    shared_blks_hit: int
    shared_blks_read: int
    hit_ratio_percent: float | None  # None when the queries touched no shared block


def slow_queries(
    *, target_id: int, start: datetime, end: datetime, order_by: str = "total_time", limit: int = 50
) -> list[SlowQuery]:
    """The `limit` queries of a target that cost the most in [start, end], by the chosen measure."""
    if order_by not in ORDERINGS:
        raise InvalidInput(f"Order by one of {', '.join(ORDERINGS)}, not {order_by!r}.", field="order_by")
    if limit < 1:
        raise InvalidInput("The limit must be at least 1.", field="limit")
    rows = list(
        QueryStat.objects.filter(target_id=target_id, collected_at__gte=start, collected_at__lte=end)
        .values("queryid")
        .annotate(**_sums())
        .annotate(mean_time_ms=F("sum_total_time_ms") / Cast(NullIf(F("sum_calls"), 0), FloatField()))
        .order_by(F(ORDERINGS[order_by]).desc(nulls_last=True), "queryid")[:limit]
    )
    # Texts are stored once per (target, queryid); a stat without one still counts, with no text.
    texts = {
        text.queryid: text
        for text in QueryText.objects.filter(target_id=target_id, queryid__in=[row["queryid"] for row in rows])
    }
    return [_slow_query(row, texts.get(row["queryid"])) for row in rows]


def _slow_query(row: dict, text: QueryText | None) -> SlowQuery:
    hit, read = int(row["sum_shared_blks_hit"]), int(row["sum_shared_blks_read"])
    return SlowQuery(
        queryid=row["queryid"],
        query=text.query if text else "",
        database=text.database if text else "",
        calls=int(row["sum_calls"]),
        total_time_ms=float(row["sum_total_time_ms"]),
        mean_time_ms=float(row["mean_time_ms"] or 0.0),
        rows=int(row["sum_rows"]),
        shared_blks_hit=hit,
        shared_blks_read=read,
        hit_ratio_percent=100.0 * hit / (hit + read) if hit + read else None,
    )


@dataclass(frozen=True)
class StatementWindows:
    """The last windows (collections) of a target's statement snapshots, side by side per query.

    `calls[queryid][i]` and `rows[queryid][i]` are the deltas of window `windows[i]` (oldest first);
    a query absent from a window (not called, or not among the statements kept that interval) has 0.
    """

    windows: list[datetime]
    interval_seconds: float  # the windows' mean length
    calls: dict[int, list[int]]
    rows: dict[int, list[int]]
    texts: dict[int, QueryText]


def statement_windows(*, target_id: int, windows: int, since: datetime) -> StatementWindows:
    """The last `windows` collections of statement snapshots of a target collected after `since`."""
    if windows < 1:
        raise InvalidInput("The number of windows must be at least 1.", field="windows")
    stamps = list(
        QueryStat.objects.filter(target_id=target_id, collected_at__gte=since)
        .values_list("collected_at", flat=True)
        .distinct()
        .order_by("-collected_at")[:windows]
    )
    stamps.reverse()
    position = {stamp: i for i, stamp in enumerate(stamps)}
    calls: dict[int, list[int]] = {}
    rows: dict[int, list[int]] = {}
    lengths: dict[datetime, float] = {}
    snapshots = QueryStat.objects.filter(target_id=target_id, collected_at__in=stamps).values_list(
        "queryid", "collected_at", "calls", "rows", "interval_seconds"
    )
    for queryid, collected_at, n_calls, n_rows, seconds in snapshots:
        i = position[collected_at]
        calls.setdefault(queryid, [0] * len(stamps))[i] = int(n_calls)
        rows.setdefault(queryid, [0] * len(stamps))[i] = int(n_rows)
        lengths[collected_at] = float(seconds)
    texts = {text.queryid: text for text in QueryText.objects.filter(target_id=target_id, queryid__in=list(calls))}
    return StatementWindows(
        windows=stamps,
        interval_seconds=sum(lengths.values()) / len(lengths) if lengths else 0.0,
        calls=calls,
        rows=rows,
        texts=texts,
    )


@dataclass(frozen=True)
class QueryBucket:
    """One query's cost over one time bucket: the sums of the snapshot deltas collected in it."""

    at: datetime  # the bucket's start
    calls: int
    total_time_ms: float
    rows: int
    shared_blks_hit: int
    shared_blks_read: int

    @property
    def mean_time_ms(self) -> float | None:
        return self.total_time_ms / self.calls if self.calls else None

    @property
    def hit_ratio_percent(self) -> float | None:
        blocks = self.shared_blks_hit + self.shared_blks_read
        return 100.0 * self.shared_blks_hit / blocks if blocks else None


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def query_buckets(
    *, target_id: int, queryid: int, start: datetime, end: datetime, bucket: timedelta
) -> list[QueryBucket]:
    """One query's snapshots collected in [start, end] summed per `bucket` (aligned to the epoch), oldest
    first; buckets with no snapshot are left out (a gap, not a zero)."""
    rows = (
        QueryStat.objects.filter(target_id=target_id, queryid=queryid, collected_at__gte=start, collected_at__lte=end)
        .annotate(
            bucket=Func(
                Value(bucket, output_field=DurationField()),
                F("collected_at"),
                Value(EPOCH, output_field=DateTimeField()),
                function="date_bin",
                output_field=DateTimeField(),
            )
        )
        .values("bucket")
        .annotate(**_sums())
        .order_by("bucket")
    )
    return [
        QueryBucket(
            at=row["bucket"],
            calls=int(row["sum_calls"]),
            total_time_ms=float(row["sum_total_time_ms"]),
            rows=int(row["sum_rows"]),
            shared_blks_hit=int(row["sum_shared_blks_hit"]),
            shared_blks_read=int(row["sum_shared_blks_read"]),
        )
        for row in rows
    ]


def query_text_get(*, target_id: int, queryid: int) -> QueryText | None:
    """The stored text of a query, or None when monitoring never recorded one, nor any snapshot of it
    (a query whose text was not kept still has its snapshots: an empty text then)."""
    text = QueryText.objects.filter(target_id=target_id, queryid=queryid).first()
    if text is None and QueryStat.objects.filter(target_id=target_id, queryid=queryid).exists():
        return QueryText(target_id=target_id, queryid=queryid, query="", database="")
    return text
