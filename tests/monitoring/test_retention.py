"""Retention against real PostgreSQL: whole old day partitions go, old rollups go in batches, the rest stays."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from monitoring import storage
from monitoring.models import RollupWatermark, Series
from monitoring.services import retention
from monitoring.services.retention import retention_run, sample_partitions_list
from monitoring.services.rollups import rollups_run

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("clean_samples")]

NOW = datetime(2026, 3, 20, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


@pytest.fixture(autouse=True)
def _retention(settings):
    settings.RETENTION_RAW_DAYS = 7
    settings.RETENTION_1M_DAYS = 90
    settings.RETENTION_1H_DAYS = 730


def _series_id(metric: str = "cpu") -> int:
    return storage.series_resolve(target_id=None, specs=[storage.SeriesSpec(metric=metric, labels={})])[0]


def _partition_names() -> list[str]:
    return [partition.name for partition in sample_partitions_list()]


def _count(sql: str, params: list | None = None) -> int:
    with connection.cursor() as cursor:
        cursor.execute(sql, params or [])
        return cursor.fetchone()[0]


def _insert_rollups(table: str, series_id: int, buckets: list[datetime]) -> None:
    with connection.cursor() as cursor:
        cursor.executemany(
            f"INSERT INTO {table} (series_id, bucket, min, max, sum, count) VALUES (%s, %s, 1, 1, 1, 1)",
            [(series_id, bucket) for bucket in buckets],
        )


def test_partitions_entirely_older_than_raw_retention_are_dropped():
    series_id = _series_id()
    # The cutoff is 2026-03-13 12:00: the 13th still holds samples inside retention.
    days = [NOW - 10 * DAY, NOW - 8 * DAY, NOW - 7 * DAY, NOW - DAY]
    for day in days:  # one write each: a write creates every day partition between its oldest and newest
        storage.samples_write([(series_id, day, 1.0)])
    rollups_run(now=NOW)

    report = retention_run(now=NOW)

    assert report.partitions_dropped == ("monitoring_sample_p20260310", "monitoring_sample_p20260312")
    assert _partition_names() == ["monitoring_sample_p20260313", "monitoring_sample_p20260319"]
    assert _count("SELECT count(*) FROM monitoring_sample") == 2
    assert Series.objects.filter(id=series_id).exists()  # series rows are kept


def test_after_a_drop_the_partition_cache_is_forgotten_so_the_day_can_be_written_again():
    series_id = _series_id()
    storage.samples_write([(series_id, NOW - 10 * DAY, 1.0)])
    rollups_run(now=NOW)
    retention_run(now=NOW)
    assert _partition_names() == []

    # With a stale cache this COPY would fail: "no partition of relation found for row".
    storage.samples_write([(series_id, NOW - 10 * DAY, 2.0)])

    assert _partition_names() == ["monitoring_sample_p20260310"]


def test_partitions_not_rolled_up_yet_are_kept():
    series_id = _series_id()
    storage.samples_write([(series_id, NOW - 10 * DAY, 1.0), (series_id, NOW - 9 * DAY, 1.0)])
    # The rollup worker was stopped on the 11th at noon: the 11th is not rolled up yet.
    RollupWatermark.objects.create(resolution="1m", done_until=NOW - 9 * DAY)

    report = retention_run(now=NOW)

    assert report.partitions_dropped == ("monitoring_sample_p20260310",)
    assert report.partitions_waiting_for_rollup == ("monitoring_sample_p20260311",)
    assert _partition_names() == ["monitoring_sample_p20260311"]


def test_old_rollups_are_deleted_in_batches_and_recent_ones_kept(monkeypatch):
    monkeypatch.setattr(retention, "DELETE_BATCH", 7)
    series_id = _series_id()
    old_1m = [NOW - 91 * DAY + i * timedelta(minutes=1) for i in range(20)]
    kept_1m = [NOW - 89 * DAY + i * timedelta(minutes=1) for i in range(5)]
    old_1h = [NOW - 731 * DAY + i * timedelta(hours=1) for i in range(15)]
    kept_1h = [NOW - 100 * DAY + i * timedelta(hours=1) for i in range(3)]
    _insert_rollups("monitoring_rollup_1m", series_id, old_1m + kept_1m)
    _insert_rollups("monitoring_rollup_1h", series_id, old_1h + kept_1h)

    report = retention_run(now=NOW)

    assert (report.rollup_1m_deleted, report.rollup_1h_deleted) == (20, 15)
    assert _count("SELECT min(bucket) = %s FROM monitoring_rollup_1m", [kept_1m[0]]) == 1
    assert _count("SELECT count(*) FROM monitoring_rollup_1m") == 5
    assert _count("SELECT count(*) FROM monitoring_rollup_1h") == 3


def test_a_second_run_finds_nothing_left_to_remove():
    series_id = _series_id()
    storage.samples_write([(series_id, NOW - 10 * DAY, 1.0)])
    _insert_rollups("monitoring_rollup_1m", series_id, [NOW - 100 * DAY])
    rollups_run(now=NOW)
    retention_run(now=NOW)

    report = retention_run(now=NOW)

    assert report.partitions_dropped == () and report.rollup_1m_deleted == 0 and report.rollup_1h_deleted == 0


def test_prune_metrics_prints_what_it_removed():
    series_id = _series_id()
    now = timezone.now()
    storage.samples_write([(series_id, now - 10 * DAY, 1.0)])
    storage.samples_write([(series_id, now - DAY, 1.0)])
    _insert_rollups("monitoring_rollup_1m", series_id, [now - 95 * DAY, now - 94 * DAY])
    rollups_run(now=now)
    old_partition = f"monitoring_sample_p{(now - 10 * DAY):%Y%m%d}"
    out = StringIO()

    call_command("prune_metrics", stdout=out)

    text = out.getvalue()
    assert "dropped 1 day partition(s)" in text and old_partition in text
    assert "deleted 2 rows" in text
    assert old_partition not in _partition_names()
