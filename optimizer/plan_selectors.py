"""Reads of plan regressions: a target's latest ones, and one with both of its captures."""

from __future__ import annotations

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404

from monitoring.models import Target
from optimizer.models import PlanRegression


def plan_regression_list(*, target: Target, limit: int = 50) -> QuerySet[PlanRegression]:
    return (
        PlanRegression.objects.filter(target=target)
        .select_related("target", "before", "after")
        .order_by("-detected_at", "-id")[:limit]
    )


def plan_regression_get(*, regression_id: int) -> PlanRegression:
    return get_object_or_404(PlanRegression.objects.select_related("target", "before", "after"), pk=regression_id)
