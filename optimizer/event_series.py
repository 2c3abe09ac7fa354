"""The optimizer's own events as series for the perfpilot collector (monitoring.collectors.perfpilot): runs
ended as a counter; recommendations by status and the observed speed-ups as gauges."""

from __future__ import annotations

from django.db.models import Count, F

from monitoring.collectors.base import Measurement
from monitoring.collectors.perfpilot import EventCounter, EventSeries
from optimizer.models import OptimizationRun, Recommendation
from optimizer.speedup_selectors import speedups_observed

SPEEDUPS_SHOWN = 50  # the most recent observed speed-ups, so the series stay few


def _counters() -> tuple[EventCounter, ...]:
    ended = [s for s in OptimizationRun.Status.values if s not in OptimizationRun.LIVE_STATUSES]
    return (
        EventCounter(
            "perfpilot_optimizer_runs_total",
            lambda: OptimizationRun.objects.filter(status__in=ended),
            F("finished_at"),  # every way a run ends sets it
            {"tuner": "tuner", "action": "action", "target": "target_name", "status": "status"},
        ),
    )


def _recommendations() -> list[Measurement]:
    """Every status of each (target, category) with advice, zeros included, so a count that drops to 0
    reads 0 rather than its last value for the lookback."""
    counts = {
        (row["target__name"], row["category"], row["status"]): row["n"]
        for row in Recommendation.objects.values("target__name", "category", "status")
        .annotate(n=Count("pk"))
        .order_by()
    }
    pairs = sorted({(target, category) for target, category, _ in counts})
    return [
        Measurement(
            "perfpilot_recommendations",
            float(counts.get((target, category, status), 0)),
            {"target": target, "category": category, "status": status},
        )
        for target, category in pairs
        for status in Recommendation.Status.values
    ]


def _speedups() -> list[Measurement]:
    out: list[Measurement] = []
    for target_name, speedup in speedups_observed(limit=SPEEDUPS_SHOWN):
        labels = {
            "target": target_name,
            "category": speedup.category,
            "recommendation": str(speedup.recommendation_id or ""),
            "title": speedup.title[:120],
        }
        out.append(Measurement("perfpilot_optimizer_speedup_ratio", float(speedup.speedup), labels))
        for phase, mean_ms in (("before", speedup.mean_before_ms), ("after", speedup.mean_after_ms)):
            if mean_ms is not None:
                out.append(
                    Measurement(
                        "perfpilot_optimizer_query_mean_seconds", mean_ms / 1000, {**labels, "phase": phase}, unit="s"
                    )
                )
    return out


def _gauges() -> list[Measurement]:
    return [*_recommendations(), *_speedups()]


OPTIMIZER_EVENT_SERIES = EventSeries(counters=_counters, gauges=_gauges)
