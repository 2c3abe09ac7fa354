"""Which charts a target shows, and building them from stored history.

KEY_CHARTS are the Overview's few charts per kind; the target page shows every metric. Titles,
units and line names come from the metric catalogue (monitoring/catalogue.py), never raw metric names.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Q

from core.charts import figure_json
from monitoring.catalogue import metric_info
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
    Target.Kind.CELERY: (ChartSpec("Queue length", ("celery_queue_length",)),),
    Target.Kind.PROMETHEUS: (),
    Target.Kind.PERFPILOT: (
        ChartSpec("Open recommendations", ("perfpilot_recommendations",), "", {"status": "open"}),
        ChartSpec("Alerts firing", ("perfpilot_alerts_firing",)),
    ),
}


@dataclass(frozen=True)
class Chart:
    title: str
    figure_json: str
    series_count: int
    points: int
    meaning: str = ""  # the catalogue's line on what the metric is, shown under a chart of one metric


@dataclass(frozen=True)
class ChartGroup:
    title: str
    unit: str
    members: list[Series]
    meaning: str = ""


def series_title(series: Series) -> str:
    """A series as a reader names it: the metric's title and its labels, e.g. "Connections {state=idle}"."""
    title = metric_info(series.metric, series.unit).title
    return f"{title} {{{series.labels_key}}}" if series.labels_key else title


def _line_name(series: Series, metrics_in_chart: int) -> str:
    if metrics_in_chart > 1:
        return series_title(series)
    return series.labels_key or metric_info(series.metric, series.unit).title


def _charts(groups: list[ChartGroup], start: datetime, end: datetime, height: int) -> list[Chart]:
    ids = [s.id for group in groups for s in group.members]
    if not ids:
        return []
    from monitoring.selectors.series import series_query

    result = series_query(series_ids=ids, start=start, end=end)
    charts = []
    for group in groups:
        metric_count = len({s.metric for s in group.members})
        lines = [Line(_line_name(s, metric_count), result.series.get(s.id, [])) for s in group.members]
        figure = timeseries_figure(lines=lines, unit=group.unit, height=height, x_range=(start, end))
        points = sum(len(line.points) for line in lines)
        charts.append(Chart(group.title, figure_json(figure), len(group.members), points, group.meaning))
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
            groups.append(ChartGroup(spec.title, spec.unit, members))
    return _charts(groups, start, end, height=180)


def all_metric_charts(*, target: Target, start: datetime, end: datetime, limit: int = 80) -> list[Chart]:
    """One chart per metric of the target, titled from the catalogue, every label set as its own line."""
    by_metric: dict[str, list[Series]] = defaultdict(list)
    for series in Series.objects.filter(target=target).order_by("metric", "labels_key"):
        by_metric[series.metric].append(series)
    groups = []
    for metric, members in list(by_metric.items())[:limit]:
        info = metric_info(metric, members[0].unit)
        groups.append(ChartGroup(info.title, info.unit, members, info.meaning))
    return _charts(groups, start, end, height=200)


def explorer_chart(*, series_ids: list[int], start: datetime, end: datetime) -> Chart | None:
    members = list(Series.objects.select_related("target").filter(id__in=series_ids).order_by("metric", "labels_key"))
    if not members:
        return None
    from monitoring.selectors.series import series_query

    result = series_query(series_ids=[s.id for s in members], start=start, end=end)
    lines = [
        Line(f"{s.target.name if s.target_id else 'pushed'} · {series_title(s)}", result.series.get(s.id, []))
        for s in members
    ]
    infos = {s.metric: metric_info(s.metric, s.unit) for s in members}
    units = {info.unit for info in infos.values()}
    # One unit for the axis only when every series shares it; otherwise the values stay plain numbers.
    unit = units.pop() if len(units) == 1 else ""
    # The chart's title names what is drawn: the one series, or the metrics of several.
    title = lines[0].name if len(lines) == 1 else ", ".join(info.title for info in infos.values())
    figure = timeseries_figure(
        lines=lines, unit=unit, height=380, show_band=len(lines) == 1, show_legend=True, x_range=(start, end)
    )
    points = sum(len(line.points) for line in lines)
    meaning = next(iter(infos.values())).meaning if len(infos) == 1 else ""
    return Chart(title, figure_json(figure), len(members), points, meaning)


@dataclass(frozen=True)
class TargetPanel:
    target: Target
    charts: list[Chart]


# The Overview charts at most this many pinned targets (each costs a few queries and three charts); the
# rest of the pinned ones are a link to the filtered targets list.
OVERVIEW_PINNED_LIMIT = 12


@dataclass(frozen=True)
class OverviewPanels:
    panels: list[TargetPanel]
    pinned_total: int  # pinned targets enabled, charted or not


def overview_panels(*, start: datetime, end: datetime) -> OverviewPanels:
    """Key charts of the enabled built-in and pinned targets, built-in ones first.

    Never every target: with thousands the Overview would cost queries and charts per target. The rest
    is summarised by monitoring.selectors.targets.target_summary.
    """
    shown = Target.objects.filter(enabled=True).filter(Q(builtin=True) | Q(pinned=True))
    builtin = list(shown.filter(builtin=True).order_by("kind", "name"))
    pinned = shown.filter(builtin=False).order_by("kind", "name")
    pinned_total = pinned.count()
    targets = builtin + list(pinned[:OVERVIEW_PINNED_LIMIT])
    return OverviewPanels(
        panels=[TargetPanel(target, key_charts(target=target, start=start, end=end)) for target in targets],
        pinned_total=pinned_total,
    )
