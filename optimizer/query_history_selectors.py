"""Reads for one query's page: its cost over time from monitoring's windowed pg_stat_statements snapshots,
and the recommendations applied on its target meanwhile (the markers on its charts).

Buckets are sized from the range so a chart gets about MAX_BUCKETS points at most (they are aligned to the
epoch, so the first and last are partial), and never finer than the target's collection interval (a finer
bucket would only hold gaps).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone

from core.errors import InvalidInput
from monitoring.models import Target
from monitoring.selectors.statements import QueryBucket, query_buckets, query_text_get
from optimizer.speedup_selectors import applies_done
from optimizer.tuners.querytree import Unparseable, query_shape

HISTORY_RANGES: dict[str, timedelta] = {
    "1h": timedelta(hours=1),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
}
DEFAULT_RANGE = "24h"
MAX_BUCKETS = 100
BUCKET_STEPS = [
    timedelta(seconds=s) for s in (60, 5 * 60, 15 * 60, 30 * 60, 3600, 2 * 3600, 6 * 3600, 12 * 3600, 86400, 7 * 86400)
]


@dataclass(frozen=True)
class AppliedMarker:
    """A recommendation applied on the target: where the query's chart may change."""

    run_id: int
    recommendation_id: int | None
    title: str
    category: str
    applied_at: datetime
    serves_query: bool  # advised for this query, or on a table it reads


@dataclass(frozen=True)
class QueryHistory:
    target: Target
    queryid: int
    query: str
    database: str
    range_label: str
    start: datetime
    end: datetime
    bucket: timedelta
    buckets: list[QueryBucket]
    totals: QueryBucket  # the whole range: `at` is its start
    markers: list[AppliedMarker]

    @property
    def bucket_label(self) -> str:
        """The bucket in words: "minute", "15 minutes", "2 hours", "day"."""
        seconds = int(self.bucket.total_seconds())
        for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute")):
            if seconds % size == 0:
                count = seconds // size
                return unit if count == 1 else f"{count} {unit}s"
        return f"{seconds} seconds"


def history_bucket(*, span: timedelta, interval_seconds: int = 0) -> timedelta:
    """The smallest step that gives at most MAX_BUCKETS buckets over `span` and is no finer than the interval."""
    floor = max(span / MAX_BUCKETS, timedelta(seconds=interval_seconds))
    return next((step for step in BUCKET_STEPS if step >= floor), BUCKET_STEPS[-1])


def _totals(buckets: list[QueryBucket], start: datetime) -> QueryBucket:
    return QueryBucket(
        at=start,
        calls=sum(b.calls for b in buckets),
        total_time_ms=sum(b.total_time_ms for b in buckets),
        rows=sum(b.rows for b in buckets),
        shared_blks_hit=sum(b.shared_blks_hit for b in buckets),
        shared_blks_read=sum(b.shared_blks_read for b in buckets),
    )


def _tables(query: str) -> set[str]:
    try:
        return {table.name for table in query_shape(query).tables.values()}
    except Unparseable:
        return set()


def applied_markers(*, target: Target, queryid: int, query: str, start: datetime, end: datetime) -> list[AppliedMarker]:
    """Recommendations applied on the target (for real, successfully) in [start, end], oldest first; each says
    whether it served this query: advised for it, or on a table the query reads."""
    runs = (
        applies_done(target=target).filter(finished_at__gte=start, finished_at__lte=end).order_by("finished_at", "id")
    )
    tables = _tables(query) if query else set()
    markers = []
    for run in runs:
        recommendation = run.recommendation
        evidence = recommendation.evidence if recommendation else {}
        advised_for = {str(q.get("queryid")) for q in evidence.get("queries", [])}
        serves = str(queryid) in advised_for or (bool(evidence.get("table")) and evidence.get("table") in tables)
        markers.append(
            AppliedMarker(
                run_id=run.id,
                recommendation_id=recommendation.id if recommendation else None,
                title=recommendation.title if recommendation else run.summary or f"{run.tuner} apply",
                category=recommendation.category if recommendation else "",
                applied_at=run.finished_at,
                serves_query=serves,
            )
        )
    return markers


def query_history(*, target: Target, queryid: int, range_label: str = DEFAULT_RANGE) -> QueryHistory | None:
    """One query's calls, time, rows and blocks per bucket over the range, with the applies in it; None when
    monitoring holds neither the text nor any snapshot of the query on this target."""
    if range_label not in HISTORY_RANGES:
        raise InvalidInput(f"range is one of {', '.join(HISTORY_RANGES)}, not {range_label!r}.", field="range")
    text = query_text_get(target_id=target.id, queryid=queryid)
    if text is None:
        return None
    end = timezone.now()
    start = end - HISTORY_RANGES[range_label]
    bucket = history_bucket(span=end - start, interval_seconds=target.interval_seconds)
    buckets = query_buckets(target_id=target.id, queryid=queryid, start=start, end=end, bucket=bucket)
    return QueryHistory(
        target=target,
        queryid=queryid,
        query=text.query,
        database=text.database,
        range_label=range_label,
        start=start,
        end=end,
        bucket=bucket,
        buckets=buckets,
        totals=_totals(buckets, start),
        markers=applied_markers(target=target, queryid=queryid, query=text.query, start=start, end=end),
    )
