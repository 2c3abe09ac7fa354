"""Keeping the daily table and index sizes the space tuner reads: one row per target, day and relation."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from monitoring.models import Target
from optimizer.models import RelationSize

_UPDATED = ["kind", "parent", "bytes", "relation_bytes", "rows", "bloat_bytes", "bloat_source"]


@transaction.atomic
def relation_sizes_record(*, target: Target, rows: list[dict[str, Any]], day: date | None = None) -> int:
    """Store one reading of the target's relations for `day` (today by default); a second reading the
    same day replaces the first. Rows older than PERFPILOT_SPACE_RETENTION_DAYS are deleted. Returns
    how many rows were written."""
    day = day or timezone.localdate()
    sizes = [
        RelationSize(
            target=target,
            day=day,
            schema=row["schema"],
            name=row["name"],
            kind=row["kind"],
            parent=row.get("parent") or "",
            bytes=row["bytes"],
            relation_bytes=row["relation_bytes"],
            rows=row["rows"],
            bloat_bytes=row.get("bloat_bytes"),
            bloat_source=row.get("bloat_source") or "",
        )
        for row in rows
    ]
    RelationSize.objects.bulk_create(
        sizes, update_conflicts=True, unique_fields=["target", "day", "schema", "name"], update_fields=_UPDATED
    )
    RelationSize.objects.filter(target=target, day__lt=day - timedelta(days=settings.SPACE_RETENTION_DAYS)).delete()
    return len(sizes)
