from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from django.db import connection

from monitoring import storage

pytestmark = pytest.mark.usefixtures("clean_samples")


def _stored(series_ids: list[int]) -> list[tuple[int, datetime, float]]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT series_id, ts, value FROM monitoring_sample WHERE series_id = ANY(%s) ORDER BY series_id, ts",
            [series_ids],
        )
        return cursor.fetchall()


def test_columns_are_stored_exactly_across_series_and_day_partitions():
    a, b = storage.series_resolve(
        target_id=None, specs=[storage.SeriesSpec("col_a", {}), storage.SeriesSpec("col_b", {"x": "1"})]
    )
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    # Microsecond timestamps on both sides of midnight, negative and tiny values.
    stamps = [midnight - timedelta(microseconds=1), midnight, midnight + timedelta(seconds=1.5)]
    unix = np.array([ts.timestamp() for ts in stamps] * 2)
    values = np.array([-1.25, 0.0, 1e-300, 42.0, 3.5, -7.0])
    written = storage.samples_write_columns(
        series_ids=np.array([a, a, a, b, b, b], dtype=np.int64), stamps=unix, values=values
    )
    assert written == 6
    assert _stored([a, b]) == [
        (a, stamps[0], -1.25),
        (a, stamps[1], 0.0),
        (a, stamps[2], 1e-300),
        (b, stamps[0], 42.0),
        (b, stamps[1], 3.5),
        (b, stamps[2], -7.0),
    ]


def test_columns_and_rows_write_the_same_samples():
    (sid,) = storage.series_resolve(target_id=None, specs=[storage.SeriesSpec("same", {})])
    now = datetime.now(UTC).replace(microsecond=123456)
    storage.samples_write([(sid, now, 1.5)])
    storage.samples_write_columns(
        series_ids=np.array([sid]), stamps=np.array([(now + timedelta(seconds=1)).timestamp()]), values=np.array([1.5])
    )
    (first, second) = _stored([sid])
    assert second[1] - first[1] == timedelta(seconds=1)
    assert first[2] == second[2] == 1.5


def test_writing_no_columns_writes_nothing():
    empty = np.array([], dtype=np.float64)
    assert storage.samples_write_columns(series_ids=np.array([], dtype=np.int64), stamps=empty, values=empty) == 0


@pytest.mark.parametrize("forwarding", [False, True], ids=["", "forwarding"])
@pytest.mark.parametrize("in_transaction", [False, True], ids=["autocommit", "in-transaction"])
def test_a_partition_dropped_by_another_process_is_recreated_on_the_next_write(in_transaction, forwarding, settings):
    from django.db import transaction

    from monitoring.models import ForwardOutbox

    settings.FORWARD_REMOTE_WRITE_URL = "http://127.0.0.1:9/api/v1/write" if forwarding else ""

    (sid,) = storage.series_resolve(target_id=None, specs=[storage.SeriesSpec("dropped_under_us", {})])
    now = datetime.now(UTC)
    storage.samples_write([(sid, now, 1.0)])
    with connection.cursor() as cursor:  # as retention or a test's cleanup in another process would
        cursor.execute(f'DROP TABLE "{storage._partition_name(now.date())}"')
    with transaction.atomic() if in_transaction else connection.cursor():
        storage.samples_write([(sid, now, 2.0)])
    assert [value for *_, value in _stored([sid])] == [2.0]
    # Queued once per stored write: the failed first try of the second write left nothing behind.
    queued = [
        storage.outbox_records(bytes(row))["value"].tolist()
        for row in ForwardOutbox.objects.order_by("id").values_list("rows", flat=True)
    ]
    assert queued == ([[1.0], [2.0]] if forwarding else [])
