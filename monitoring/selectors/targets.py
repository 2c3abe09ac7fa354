"""Reads about targets: lists, current values and forecasts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import QuerySet

from monitoring.models import Series, Target

# Metrics that grow towards a limit: the default limit, or the target option that sets it
# (options["forecast_limits"][metric]); without a limit the trend is still shown.
FORECAST_METRICS = {
    "host_disk_used_percent": 100.0,
    "postgres_database_size_bytes": None,
    "redis_used_memory_bytes": None,
}


def target_list(*, kind: str | None = None) -> QuerySet[Target]:
    targets = Target.objects.all()
    if kind:
        targets = targets.filter(kind=kind)
    return targets.order_by("-builtin", "name")


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
