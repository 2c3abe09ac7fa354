"""Which charts a target shows, and building them from stored history.

KEY_CHARTS are the Overview's few charts per kind; the target page shows every metric.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from core.charts import figure_json
from monitoring.charts import Line, timeseries_figure
from monitoring.models import Series, Target


@dataclass(frozen=True)
class ChartSpec:
    title: str
    metrics: tuple[str, ...]
    unit: str = ""
    labels: dict[str, str] | None = None  # only series whose labels include these


KEY_CHARTS: dict[str, tuple[ChartSpec, ...]] = {
    Target.Kind.HOST: (
        ChartSpec("CPU", ("host_cpu_percent",), "%", {"cpu": "total"}),
        ChartSpec("Memory and swap", ("host_memory_used_percent", "host_swap_used_percent"), "%"),
        ChartSpec("Disk used", ("host_disk_used_percent",), "%"),
    ),
    Target.Kind.POSTGRES: (
        ChartSpec("Transactions", ("postgres_commits_per_second", "postgres_rollbacks_per_second"), "/s"),
        ChartSpec("Connections", ("postgres_connections",), ""),
        ChartSpec("Cache hit ratio", ("postgres_cache_hit_ratio_percent",), "%"),
    ),
    Target.Kind.REDIS: (
        ChartSpec("Memory", ("redis_used_memory_bytes", "redis_used_memory_rss_bytes"), "bytes"),
        ChartSpec("Hit ratio", ("redis_hit_ratio_percent",), "%"),
    ),
    Target.Kind.CELERY: (ChartSpec("Queue length", ("celery_queue_length",), "tasks"),),
    Target.Kind.PROMETHEUS: (),
}


@dataclass(frozen=True)
class Chart:
    title: str
    figure_json: str
    series_count: int
    points: int


def _line_name(series: Series, metrics_in_chart: int) -> str:
    label = series.labels_key
    if metrics_in_chart > 1:
        return f"{series.metric}{'{' + label + '}' if label else ''}"
    return label or series.metric


def _charts(groups: list[tuple[str, str, list[Series]]], start: datetime, end: datetime, height: int) -> list[Chart]:
    ids = [s.id for _, _, members in groups for s in members]
    if not ids:
        return []
    from monitoring.selectors.series import series_query

    result = series_query(series_ids=ids, start=start, end=end)
    charts = []
    for title, unit, members in groups:
        metric_count = len({s.metric for s in members})
        lines = [Line(_line_name(s, metric_count), result.series.get(s.id, [])) for s in members]
        figure = timeseries_figure(lines=lines, unit=unit, height=height, x_range=(start, end))
        charts.append(Chart(title, figure_json(figure), len(members), sum(len(line.points) for line in lines)))
    return charts


def key_charts(*, target: Target, start: datetime, end: datetime) -> list[Chart]:
    specs = KEY_CHARTS.get(target.kind, ())
    series = list(Series.objects.filter(target=target, metric__in={m for spec in specs for m in spec.metrics}))
    groups = []
    for spec in specs:
        members = [
            s
            for s in series
            if s.metric in spec.metrics and all(s.labels.get(k) == v for k, v in (spec.labels or {}).items())
        ]
        if members:
            members.sort(key=lambda s: (spec.metrics.index(s.metric), s.labels_key))
            groups.append((spec.title, spec.unit, members))
    return _charts(groups, start, end, height=180)


def all_metric_charts(*, target: Target, start: datetime, end: datetime, limit: int = 80) -> list[Chart]:
    """One chart per metric of the target, every label set as its own line."""
    by_metric: dict[str, list[Series]] = defaultdict(list)
    for series in Series.objects.filter(target=target).order_by("metric", "labels_key"):
        by_metric[series.metric].append(series)
    groups = [(metric, members[0].unit, members) for metric, members in list(by_metric.items())[:limit]]
    return _charts(groups, start, end, height=200)


def explorer_chart(*, series_ids: list[int], start: datetime, end: datetime) -> Chart | None:
    members = list(Series.objects.select_related("target").filter(id__in=series_ids).order_by("metric", "labels_key"))
    if not members:
        return None
    from monitoring.selectors.series import series_query

    result = series_query(series_ids=[s.id for s in members], start=start, end=end)
    lines = [Line(f"{s.target.name if s.target_id else 'pushed'} · {s}", result.series.get(s.id, [])) for s in members]
    figure = timeseries_figure(lines=lines, height=380, show_band=len(lines) == 1, x_range=(start, end))
    return Chart("Explorer", figure_json(figure), len(members), sum(len(line.points) for line in lines))


@dataclass(frozen=True)
class TargetPanel:
    target: Target
    charts: list[Chart]


def overview_panels(*, start: datetime, end: datetime) -> list[TargetPanel]:
    """Key charts of every enabled target, built-in ones first."""
    targets = Target.objects.filter(enabled=True).order_by("-builtin", "kind", "name")
    return [TargetPanel(target, key_charts(target=target, start=start, end=end)) for target in targets]
