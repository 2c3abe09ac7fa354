"""Helpers for monitoring tests (the clean_samples fixture is in tests/conftest.py)."""

from __future__ import annotations

from django.db import connection


def sample_count(series_id: int) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM monitoring_sample WHERE series_id = %s", [series_id])
        return cursor.fetchone()[0]


def measurements_by_metric(result) -> dict[str, list]:
    """A collector result's measurements grouped by metric name."""
    found: dict[str, list] = {}
    for measurement in result.measurements:
        found.setdefault(measurement.metric, []).append(measurement)
    return found


def stored_samples(target_id: int, metric: str) -> list[tuple[str, str, float]]:
    """(series kind, labels_key, value) of every sample stored for a target's metric, oldest first."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT s.kind, s.labels_key, m.value FROM monitoring_sample m "
            "JOIN monitoring_series s ON s.id = m.series_id "
            "WHERE s.target_id = %s AND s.metric = %s ORDER BY m.ts",
            [target_id, metric],
        )
        return cursor.fetchall()
