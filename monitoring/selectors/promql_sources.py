"""Reads of PromQL sources (the external servers PromQL rules may read)."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import QuerySet

from monitoring.models import PromQLSource


def promql_source_list() -> QuerySet[PromQLSource]:
    return PromQLSource.objects.order_by("name")


@dataclass(frozen=True)
class PromQLSourceReaders:
    alert_rules: list
    scaling_rules: list


def promql_source_readers(*, source: PromQLSource) -> PromQLSourceReaders:
    """The alert and scaling rules that read the source (and keep it from being deleted)."""
    return PromQLSourceReaders(
        alert_rules=list(source.alert_rules.order_by("name")),
        scaling_rules=list(source.scaling_rules.select_related("service").order_by("service__name", "name")),
    )
