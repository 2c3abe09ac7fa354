"""Helpers for monitoring tests (the clean_samples fixture is in tests/conftest.py)."""

from __future__ import annotations

from django.db import connection


def sample_count(series_id: int) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM monitoring_sample WHERE series_id = %s", [series_id])
        return cursor.fetchone()[0]
