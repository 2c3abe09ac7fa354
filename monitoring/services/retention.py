"""Retention: drop raw day partitions and delete rollups older than their configured age.

Raw samples go a whole day partition at a time (DROP TABLE is instant and leaves no bloat);
rollups are deleted in small batches so no single transaction holds many row locks or runs long.
Series rows are kept: their ids are referenced by alerts and charts, and a series that reports
again reuses its id.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg.errors
from django.conf import settings
from django.db import OperationalError, connection, transaction
from django.utils import timezone

from monitoring.models import RollupWatermark
from monitoring.storage import SAMPLE_TABLE, sample_partitions_forget

logger = logging.getLogger(__name__)

DELETE_BATCH = 50_000
# DROP TABLE of a partition takes an exclusive lock on the parent; waiting behind a long chart
# query would queue every writer behind us, so give up on that partition and retry next run.
_DROP_LOCK_TIMEOUT = "5s"
_PARTITION_NAME = re.compile(rf"^{SAMPLE_TABLE}_p(\d{{8}})$")
_ROLLUP_TABLES = ("monitoring_rollup_1m", "monitoring_rollup_1h")


@dataclass(frozen=True)
class SamplePartition:
    name: str
    start: datetime  # inclusive
    end: datetime  # exclusive


@dataclass(frozen=True)
class RetentionReport:
    raw_cutoff: datetime
    cutoff_1m: datetime
    cutoff_1h: datetime
    partitions_dropped: tuple[str, ...] = ()
    # Older than retention but not rolled up yet (the rollup worker is behind): kept until it is.
    partitions_waiting_for_rollup: tuple[str, ...] = ()
    # The drop timed out waiting for a lock; retried on the next run.
    partitions_busy: tuple[str, ...] = ()
    rollup_1m_deleted: int = 0
    rollup_1h_deleted: int = 0
    duration_ms: float = 0.0


def sample_partitions_list() -> list[SamplePartition]:
    """The day partitions of monitoring_sample, oldest first (from pg_inherits, not from names we guess)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = %s::regclass",
            [SAMPLE_TABLE],
        )
        names = [row[0] for row in cursor.fetchall()]
    partitions = []
    for name in names:
        match = _PARTITION_NAME.match(name)
        if match is None:
            continue  # not one of ours (e.g. attached by hand): never touched
        start = datetime.strptime(match.group(1), "%Y%m%d").replace(tzinfo=UTC)
        partitions.append(SamplePartition(name=name, start=start, end=start + timedelta(days=1)))
    return sorted(partitions, key=lambda partition: partition.start)


def retention_run(*, now: datetime | None = None) -> RetentionReport:
    """Drop raw partitions and delete rollup rows that are entirely past their retention."""
    started = time.perf_counter()
    now = now or timezone.now()
    raw_cutoff = now - timedelta(days=settings.RETENTION_RAW_DAYS)
    cutoff_1m = now - timedelta(days=settings.RETENTION_1M_DAYS)
    cutoff_1h = now - timedelta(days=settings.RETENTION_1H_DAYS)

    rolled_up_until = RollupWatermark.objects.filter(resolution="1m").values_list("done_until", flat=True).first()
    dropped, waiting, busy = [], [], []
    for partition in sample_partitions_list():
        if partition.end > raw_cutoff:
            break  # sorted oldest first: the rest are younger still
        # With no watermark the rollups never ran, and their first run starts at the raw
        # retention cutoff anyway, so there is nothing to wait for.
        if rolled_up_until is not None and partition.end > rolled_up_until:
            waiting.append(partition.name)
            continue
        if _drop_partition(partition.name):
            dropped.append(partition.name)
        else:
            busy.append(partition.name)
    if dropped:
        # This process's cache; other processes recreate a dropped day only if they write to it.
        sample_partitions_forget()

    deleted_1m = _delete_rollups_before("monitoring_rollup_1m", cutoff_1m)
    deleted_1h = _delete_rollups_before("monitoring_rollup_1h", cutoff_1h)
    return RetentionReport(
        raw_cutoff=raw_cutoff,
        cutoff_1m=cutoff_1m,
        cutoff_1h=cutoff_1h,
        partitions_dropped=tuple(dropped),
        partitions_waiting_for_rollup=tuple(waiting),
        partitions_busy=tuple(busy),
        rollup_1m_deleted=deleted_1m,
        rollup_1h_deleted=deleted_1h,
        duration_ms=round((time.perf_counter() - started) * 1000, 2),
    )


def _drop_partition(name: str) -> bool:
    """DROP one partition; False if its lock was not granted in time (logged, retried next run)."""
    if _PARTITION_NAME.match(name) is None:  # the name goes into SQL: only our own pattern
        raise ValueError(f"not a sample partition: {name!r}")
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"SET LOCAL lock_timeout = '{_DROP_LOCK_TIMEOUT}'")
            cursor.execute(f"DROP TABLE IF EXISTS {name}")
    except OperationalError as exc:
        if not isinstance(exc.__cause__, psycopg.errors.LockNotAvailable):
            raise
        logger.warning("retention: %s is busy (lock timeout); it will be dropped on the next run", name)
        return False
    return True


def _delete_rollups_before(table: str, cutoff: datetime) -> int:
    """Delete rows with bucket < cutoff, DELETE_BATCH at a time, each batch in its own transaction."""
    if table not in _ROLLUP_TABLES:
        raise ValueError(f"not a rollup table: {table!r}")
    # The `ctid IN (SELECT ctid … LIMIT n)` batch, written as ctid = ANY(ARRAY(…)): that form is
    # always one TID scan of exactly the selected rows, where IN is planned as a join whose shape
    # depends on estimates (a hash of ctids plus a TID probe per row on PostgreSQL 18).
    sql = (
        f"DELETE FROM {table} WHERE ctid = ANY(ARRAY("  # noqa: S608 - table is one of _ROLLUP_TABLES
        f"SELECT ctid FROM {table} WHERE bucket < %s LIMIT %s))"
    )
    total = 0
    while True:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, [cutoff, DELETE_BATCH])
            deleted = cursor.rowcount
        total += deleted
        if deleted < DELETE_BATCH:
            return total
