"""Reads of PromQL sources (the external servers PromQL rules may read)."""

from __future__ import annotations

from django.db.models import QuerySet

from monitoring.models import PromQLSource


def promql_source_list() -> QuerySet[PromQLSource]:
    return PromQLSource.objects.order_by("name")
