"""Reads of the speed-ups observed after applied index advice (measured by services/speedups.py into the
applying run's evidence_after["observed"]): the end of the Database page's workbench flow."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import QuerySet

from monitoring.models import Target
from optimizer.models import OptimizationRun, Recommendation
from optimizer.services.speedups import MEASURED_CATEGORIES

OBSERVED, WAITING, NOT_OBSERVED = "observed", "waiting", "not_observed"


@dataclass(frozen=True)
class SpeedupQuery:
    queryid: int
    query: str
    before_ms: float | None  # mean time before the apply (as advised, when not observed yet)
    after_ms: float | None
    speedup: float | None


@dataclass(frozen=True)
class Speedup:
    run_id: int
    recommendation_id: int | None
    title: str
    category: str
    applied_at: datetime | None
    status: str  # observed, waiting (no calls since the apply yet), not_observed (given up on)
    speedup: float | None
    mean_before_ms: float | None
    mean_after_ms: float | None
    note: str
    queries: list[SpeedupQuery]


def _speedup(run: OptimizationRun) -> Speedup:
    recommendation = run.recommendation
    advised = (recommendation.evidence if recommendation else {}).get("queries", [])
    observed = (run.evidence_after or {}).get("observed")
    measured = (observed or {}).get("queries", {})
    queries = []
    for q in advised:
        seen = measured.get(str(q.get("queryid"))) or {}
        queries.append(
            SpeedupQuery(
                queryid=int(q["queryid"]),
                query=" ".join(str(q.get("query", "")).split()),
                before_ms=seen.get("before_ms", q.get("mean_time_ms")),
                after_ms=seen.get("after_ms"),
                speedup=seen.get("speedup"),
            )
        )
    if observed is None:
        status, note = WAITING, "Waiting for calls of the affected queries since the apply (measured every 5 minutes)."
    elif observed.get("speedup") is None and not measured:
        status, note = NOT_OBSERVED, observed.get("note", "No calls of the affected queries observed.")
    else:
        status, note = OBSERVED, ""
    return Speedup(
        run_id=run.id,
        recommendation_id=recommendation.id if recommendation else None,
        title=recommendation.title if recommendation else run.summary,
        category=recommendation.category if recommendation else "",
        applied_at=run.finished_at,
        status=status,
        speedup=(observed or {}).get("speedup"),
        mean_before_ms=(observed or {}).get("mean_before_ms"),
        mean_after_ms=(observed or {}).get("mean_after_ms"),
        note=note,
        queries=queries,
    )


def applies_done(*, target: Target) -> QuerySet[OptimizationRun]:
    """The recommendations applied on a target for real and successfully (their runs, with the recommendation)."""
    return OptimizationRun.objects.filter(
        target=target,
        action=OptimizationRun.Action.APPLY,
        status=OptimizationRun.Status.SUCCEEDED,
        dry_run=False,
    ).select_related("recommendation")


def speedup_list(*, target: Target, limit: int = 20) -> list[Speedup]:
    """Index advice applied on the target (for real, successfully), newest first, with the mean time of the
    queries it served before and after, as observed."""
    runs = applies_done(target=target).filter(recommendation__category__in=MEASURED_CATEGORIES)
    runs = runs.order_by("-finished_at", "-id")[:limit]
    return [_speedup(run) for run in runs]


def speedups_observed(*, limit: int) -> list[tuple[str, Speedup]]:
    """(target name, speed-up) of the most recent applies whose speed-up was observed, over every target.

    Reached from the applied recommendations (an index on their status), not by scanning the run log:
    monitoring asks at every collection."""
    applied = Recommendation.objects.filter(status=Recommendation.Status.APPLIED, category__in=MEASURED_CATEGORIES)
    runs = OptimizationRun.objects.filter(
        recommendation__in=applied,
        action=OptimizationRun.Action.APPLY,
        status=OptimizationRun.Status.SUCCEEDED,
        dry_run=False,
        evidence_after__observed__speedup__isnull=False,
    ).select_related("recommendation")
    runs = runs.order_by("-finished_at", "-id")[:limit]
    found = [(run.target_name, _speedup(run)) for run in runs]
    return [(target, speedup) for target, speedup in found if speedup.speedup is not None]  # JSON null passes isnull
