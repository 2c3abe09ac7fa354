"""Reads about targets: lists, current values and forecasts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Case, Count, F, QuerySet, Value, When

from monitoring.models import Series, Target

# Metrics that grow towards a limit: the default limit, or the target option that sets it
# (options["forecast_limits"][metric]); without a limit the trend is still shown.
FORECAST_METRICS = {
    "host_disk_used_percent": 100.0,
    "postgres_database_size_bytes": None,
    "redis_used_memory_bytes": None,
}


def target_list(
    *,
    text: str | None = None,
    kind: str | None = None,
    status: str | None = None,
    enabled: bool | None = None,
    pinned: bool | None = None,
) -> QuerySet[Target]:
    """Targets matching every filter given (None: any), built-in ones first, then by name.

    A deployment may hold thousands: callers page or slice this, never iterate all of it for a page.
    Collector groups (issue 16, item 2) add `group: str | None = None` here, filtered like `kind`; the
    targets page's filter form and GET /api/v1/targets then take it by the same name.
    """
    targets = Target.objects.all()
    if text:
        targets = targets.filter(name__icontains=text)
    if kind:
        targets = targets.filter(kind=kind)
    if status:
        targets = targets.filter(status=status)
    if enabled is not None:
        targets = targets.filter(enabled=enabled)
    if pinned is not None:
        targets = targets.filter(pinned=pinned)
    return targets.order_by("-builtin", "name")


def target_name_matches(*, text: str, kinds: Sequence[str] = (), limit: int = 20) -> list[Target]:
    """Suggestions for a target picker (of these kinds, if any given): names starting with `text` first,
    then containing it."""
    targets = target_list(text=text or None)
    if kinds:
        targets = targets.filter(kind__in=kinds)
    starts = Case(When(name__istartswith=text, then=0), default=1) if text else Value(0)
    return list(targets.order_by(starts, "-builtin", "-pinned", "name")[:limit])


@dataclass(frozen=True)
class TargetSummary:
    """The enabled targets the Overview does not chart (neither built-in nor pinned), in figures."""

    total: int
    by_status: dict[str, int]
    by_kind: list[tuple[str, str, int]]  # kind, its label, count
    worst_down: list[Target]


def target_summary(*, worst: int = 10) -> TargetSummary:
    """Two queries whatever the number of targets: counts by status and kind, and the worst down targets
    (most consecutive failures, then longest without a success)."""
    rest = Target.objects.filter(enabled=True, builtin=False, pinned=False)
    by_status = dict.fromkeys(Target.Status.values, 0)
    by_kind: dict[str, int] = {}
    for row in rest.order_by().values("status", "kind").annotate(count=Count("id")):
        by_status[row["status"]] = by_status.get(row["status"], 0) + row["count"]
        by_kind[row["kind"]] = by_kind.get(row["kind"], 0) + row["count"]
    labels = dict(Target.Kind.choices)
    down = rest.filter(status=Target.Status.DOWN).order_by(
        "-consecutive_failures", F("last_success_at").asc(nulls_first=True), "name"
    )
    return TargetSummary(
        total=sum(by_status.values()),
        by_status=by_status,
        by_kind=[(kind, labels.get(kind, kind), count) for kind, count in sorted(by_kind.items())],
        worst_down=list(down[:worst]),
    )


@dataclass(frozen=True)
class CurrentValue:
    series: Series
    value: float
    at: datetime


def current_values(*, target: Target | None = None, within: timedelta = timedelta(minutes=10)) -> list[CurrentValue]:
    """The latest value of every series (of one target, or all) seen within the last `within`."""
    from monitoring.selectors.series import series_latest

    series = Series.objects.select_related("target").order_by("target__name", "metric", "labels_key")
    if target is not None:
        series = series.filter(target=target)
    by_id = {s.id: s for s in series}
    latest = series_latest(series_ids=list(by_id), within=within)
    return [CurrentValue(series=by_id[sid], value=value, at=at) for sid, (at, value) in latest.items()]


def target_forecasts(*, target: Target, window: timedelta = timedelta(days=7)) -> list[tuple[Series, object]]:
    from monitoring.selectors.forecasts import forecast_series

    limits = (target.options or {}).get("forecast_limits", {})
    results = []
    for series in Series.objects.filter(target=target, metric__in=FORECAST_METRICS).order_by("metric", "labels_key"):
        limit = limits.get(series.metric, FORECAST_METRICS[series.metric])
        if limit is None:
            continue
        forecast = forecast_series(series_id=series.id, window=window, limit=float(limit))
        if forecast is not None:
            results.append((series, forecast))
    return results
