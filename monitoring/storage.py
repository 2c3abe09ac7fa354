"""Writing samples: series identity resolution and bulk COPY into day partitions.

Everything that writes samples (collectors, the push API, benchmarks) goes through
samples_write(), so the partitioning and the dirty-range bookkeeping for rollups live in one place.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache

import numpy as np
import psycopg
from django.conf import settings
from django.db import connection, transaction

from monitoring.models import ForwardOutbox, RollupDirtyRange, RollupWatermark, Series

SAMPLE_TABLE = "monitoring_sample"
_PARTITION_LOCK_KEY = 0x5050_4D4F  # advisory lock id for partition DDL ("PPMO")


def labels_key(labels: dict[str, str] | None) -> str:
    """Canonical identity of a label set: sorted k=v pairs joined by commas."""
    if not labels:
        return ""
    return ",".join([f"{key}={labels[key]}" for key in sorted(labels)])  # a list joins faster than a generator


@dataclass(frozen=True)
class SeriesSpec:
    metric: str
    labels: dict[str, str]
    kind: str = Series.Kind.GAUGE
    unit: str = ""


class _SeriesCache:
    """Process-local map of (target_id, metric, labels_key) to series id; ids never change."""

    def __init__(self, limit: int | None = None) -> None:
        self.limit = limit
        self.ids: dict[tuple[int | None, str, str], int] = {}
        self.lock = threading.Lock()

    def get(self, key):
        return self.ids.get(key)

    def put_many(self, items: dict) -> None:
        with self.lock:
            limit = self.limit if self.limit is not None else settings.SERIES_CACHE_SIZE
            if len(self.ids) + len(items) > limit:
                self.ids.clear()
            self.ids.update(items)

    def clear(self) -> None:
        with self.lock:
            self.ids.clear()


series_cache = _SeriesCache()


def series_resolve(
    *, target_id: int | None, specs: Sequence[SeriesSpec], labels_keys: Sequence[str] | None = None
) -> list[int]:
    """Series ids for the specs, creating the series that do not exist yet (in one round trip each way).

    labels_keys, when the caller has them already, are the specs' labels_key(), in order.
    """
    if labels_keys is None:
        labels_keys = [labels_key(spec.labels) for spec in specs]
    keys = [(target_id, spec.metric, key) for spec, key in zip(specs, labels_keys, strict=True)]
    missing = {key: spec for key, spec in zip(keys, specs, strict=True) if series_cache.get(key) is None}
    if missing:
        Series.objects.bulk_create(
            [
                Series(
                    target_id=target_id,
                    metric=spec.metric,
                    labels=spec.labels or {},
                    labels_key=key[2],
                    kind=spec.kind,
                    unit=spec.unit,
                )
                for key, spec in missing.items()
            ],
            ignore_conflicts=True,
        )
        metrics = {key[1] for key in missing}
        rows = Series.objects.filter(target_id=target_id, metric__in=metrics).values_list("metric", "labels_key", "id")
        found = {(target_id, metric, lkey): sid for metric, lkey, sid in rows}
        series_cache.put_many({key: found[key] for key in missing})
    return [series_cache.get(key) for key in keys]


def _partition_name(day: date) -> str:
    return f"{SAMPLE_TABLE}_p{day:%Y%m%d}"


_known_partitions: set[date] = set()


def sample_partitions_ensure(days: Iterable[date]) -> None:
    """Create the day partitions that the given days need (idempotent, safe across processes)."""
    needed = sorted(set(days) - _known_partitions)
    if not needed:
        return
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_PARTITION_LOCK_KEY])
        for day in needed:
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            end = start + timedelta(days=1)
            cursor.execute(
                f"CREATE TABLE IF NOT EXISTS {_partition_name(day)} PARTITION OF {SAMPLE_TABLE} "
                "FOR VALUES FROM (%s) TO (%s)",
                [start, end],
            )
    _known_partitions.update(needed)


def sample_partitions_forget() -> None:
    """Forget which partitions exist (after they are dropped by retention or by tests)."""
    _known_partitions.clear()


# PostgreSQL's binary COPY format: a header, then per row a field count and (length, value) per
# field, big-endian; timestamptz is microseconds since 2000-01-01 UTC. Packing rows with one
# precompiled struct is several times cheaper than a per-row write through the driver, and the
# push API is dominated by exactly this per-row cost.
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)
_COPY_TRAILER = struct.pack("!h", -1)
_COPY_ROW = struct.Struct("!hiqiqid")
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_PG_EPOCH_UNIX = _PG_EPOCH.timestamp()
_ONE_MICROSECOND = timedelta(microseconds=1)


def samples_write(rows: Sequence[tuple[int, datetime, float]]) -> int:
    """Write (series_id, ts, value) rows with timezone-aware datetimes. Returns the number written."""
    if not rows:
        return 0
    pack = _COPY_ROW.pack
    epoch, unit = _PG_EPOCH, _ONE_MICROSECOND
    packed = b"".join(pack(3, 8, sid, 8, (ts - epoch) // unit, 8, value) for sid, ts, value in rows)
    _copy_packed(packed, min(row[1] for row in rows), max(row[1] for row in rows))
    return len(rows)


# The same row layout as a numpy record type, for the push API: packing whole columns at once
# costs a fraction of a per-row struct.pack on 10,000-sample batches.
_COPY_RECORD = np.dtype(
    [
        ("fields", ">i2"),
        ("series_id_len", ">i4"),
        ("series_id", ">i8"),
        ("ts_len", ">i4"),
        ("ts", ">i8"),
        ("value_len", ">i4"),
        ("value", ">f8"),
    ]
)


def samples_write_columns(*, series_ids: np.ndarray, stamps: np.ndarray, values: np.ndarray) -> int:
    """Write samples given as three equal-length columns: series ids, Unix seconds and values.

    The push API's fast path: no Python object per sample.
    """
    if len(stamps) == 0:
        return 0
    records = np.empty(len(stamps), dtype=_COPY_RECORD)
    records["fields"] = 3
    records["series_id_len"] = records["ts_len"] = records["value_len"] = 8
    records["series_id"] = series_ids
    records["ts"] = np.rint((stamps - _PG_EPOCH_UNIX) * 1_000_000)
    records["value"] = values
    oldest = datetime.fromtimestamp(float(stamps.min()), UTC)
    newest = datetime.fromtimestamp(float(stamps.max()), UTC)
    _copy_packed(records.tobytes(), oldest, newest)
    return len(stamps)


def _copy_packed(packed: bytes, oldest: datetime, newest: datetime) -> None:
    """COPY already-packed rows, after making sure every day between oldest and newest has a partition.

    Rows older than what rollups already cover are recorded as a dirty range, so the next rollup
    run recomputes those buckets.
    """
    day = oldest.astimezone(UTC).date()
    last_day = newest.astimezone(UTC).date()
    days = []
    while day <= last_day:
        days.append(day)
        day += timedelta(days=1)
    sample_partitions_ensure(days)
    try:
        _store(packed, oldest, newest)
    except psycopg.errors.CheckViolation:
        # A partition this process had seen was dropped by another one since (retention, a test's
        # cleanup): no partition for the rows. Forget, recreate and write them once more.
        _known_partitions.difference_update(days)
        sample_partitions_ensure(days)
        _store(packed, oldest, newest)


def _store(packed: bytes, oldest: datetime, newest: datetime) -> None:
    if not settings.FORWARD_REMOTE_WRITE_URL:
        _copy_rows(packed)
        _mark_dirty_if_rolled_up(oldest, newest)
        return
    # Forwarding on: the samples and their outbox rows commit together, or neither does. A failed COPY
    # rolls this whole block back, so the COPY needs no savepoint of its own.
    with transaction.atomic():
        _copy_rows(packed, savepoint=False)
        _outbox_append(packed, oldest=oldest, newest=newest)


COPY_RECORD_SIZE = _COPY_RECORD.itemsize  # 38 bytes; samples_write's struct packs the same layout


def _outbox_append(packed: bytes, *, oldest: datetime, newest: datetime) -> None:
    """Queue the written records for remote-write forwarding, at most FORWARD_BATCH_SAMPLES per row, and
    mark the rolled-up range dirty (_mark_dirty_if_rolled_up) in the same statement: one round trip less.

    Each row is the COPY's records compressed with LZ4 (block format, with its size): about a fifth of the
    bytes for some 25 ns a sample, far less than what writing them uncompressed cost (docs/benchmarks.md).
    """
    import cramjam

    step = settings.FORWARD_BATCH_SAMPLES * COPY_RECORD_SIZE
    chunks = [packed[start : start + step] for start in range(0, len(packed), step)]
    with connection.cursor() as cursor:
        cursor.execute(
            _outbox_sql(),
            [
                [len(chunk) // COPY_RECORD_SIZE for chunk in chunks],
                [bytes(cramjam.lz4.compress_block(chunk)) for chunk in chunks],
                oldest,
                newest,
                oldest,
            ],
        )


def outbox_records(row: bytes) -> np.ndarray:
    """The COPY records of one outbox row (_outbox_append's LZ4 block), as a record array."""
    import cramjam

    return np.frombuffer(bytes(cramjam.lz4.decompress_block(row)), dtype=_COPY_RECORD)


@cache
def _outbox_sql() -> str:
    quote = connection.ops.quote_name
    return (
        f"WITH queued AS (INSERT INTO {quote(ForwardOutbox._meta.db_table)} "  # noqa: S608 - our tables
        f"({quote('created_at')}, {quote('samples')}, {quote('rows')}) "
        "SELECT now(), n, r FROM unnest(%s::int[], %s::bytea[]) AS u(n, r)) " + _mark_dirty_sql()
    )


def _copy_rows(packed: bytes, *, savepoint: bool = True) -> None:
    # Inside a transaction a failed COPY would abort it: a savepoint keeps the retry possible there.
    # Outside one the COPY is its own transaction, and the savepoint's round trips are saved.
    guard = transaction.atomic() if savepoint and connection.in_atomic_block else nullcontext()
    with (
        guard,
        connection.cursor() as cursor,
        cursor.cursor.copy(f"COPY {SAMPLE_TABLE} (series_id, ts, value) FROM STDIN (FORMAT BINARY)") as copy,
    ):
        copy.write(_COPY_HEADER)
        copy.write(packed)
        copy.write(_COPY_TRAILER)


def _mark_dirty_if_rolled_up(oldest: datetime, newest: datetime) -> None:
    # One statement that fetches nothing: it follows every write, each collection's included, and
    # reading the watermark through the ORM first cost more than the COPY itself.
    with connection.cursor() as cursor:
        cursor.execute(_mark_dirty_sql(), [oldest, newest, oldest])


@cache
def _mark_dirty_sql() -> str:
    quote = connection.ops.quote_name
    dirty, watermark = RollupDirtyRange._meta.db_table, RollupWatermark._meta.db_table
    return (
        f"INSERT INTO {quote(dirty)} ({quote('start')}, {quote('end')}, {quote('created_at')}) "  # noqa: S608 - our tables
        f"SELECT %s, least(%s, done_until), now() FROM {quote(watermark)} "
        "WHERE resolution = '1m' AND %s < done_until"
    )
