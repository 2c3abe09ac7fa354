"""Plotly figures for scaling pages, built from selector and replay data (tests check the figure data).

Both charts put replicas as a step line (line shape "hv": a count holds until the next decision) on
the left axis over the metric that drives them on the right axis, with the rule's target dashed.
Figures are plain dicts in plotly's figure schema; core/charts.py says why.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime

from core.charts import PALETTE, time_layout, value_axis, value_hover, with_empty_state
from scaling.selectors import MetricPoint

REPLICAS_COLOUR = PALETTE[0]
METRIC_COLOUR = PALETTE[2]


def replicas_figure(
    *,
    replicas: Sequence[tuple[datetime, int]],
    metric: Sequence[MetricPoint] = (),
    metric_name: str = "",
    target: float | None = None,
    replicas_name: str = "replicas",
    metric_unit: str = "",
    height: int = 280,
) -> dict:
    """Replicas (left axis, whole numbers) over the metric (right axis, formatted by metric_unit); with no
    decisions and no metric the figure says "No data in this range yet" instead of empty axes."""
    traces = []
    if metric:
        traces.append(
            {
                "type": "scatter",
                "x": [p.ts for p in metric],
                "y": [p.value for p in metric],
                "name": metric_name or "metric",
                "mode": "lines",
                "yaxis": "y2",
                "line": {"width": 1.4, "color": METRIC_COLOUR},
                "hovertemplate": value_hover(metric_unit) + "<extra>" + (metric_name or "metric") + "</extra>",
            }
        )
        if target is not None:
            traces.append(
                {
                    "type": "scatter",
                    "x": [metric[0].ts, metric[-1].ts],
                    "y": [target, target],
                    "name": "target",
                    "mode": "lines",
                    "yaxis": "y2",
                    "line": {"width": 1, "dash": "dash", "color": METRIC_COLOUR},
                    "hoverinfo": "skip",
                }
            )
    traces.append(
        {
            "type": "scatter",
            "x": [ts for ts, _ in replicas],
            "y": [count for _, count in replicas],
            "name": replicas_name,
            "mode": "lines+markers",
            "line": {"shape": "hv", "width": 2.2, "color": REPLICAS_COLOUR},
            "marker": {"size": 4},
            "hovertemplate": "%{y} replicas<extra></extra>",
        }
    )
    layout = {
        **time_layout(height=height),
        "yaxis": {
            "title": {"text": "replicas", "font": {"size": 10}},
            "rangemode": "tozero",
            # Replicas are whole numbers: ticks every whole step (about five of them), never a 1.5.
            "dtick": max(1, math.ceil(max((count for _, count in replicas), default=1) / 5)),
        },
        "yaxis2": {
            **value_axis(metric_unit),
            "title": {"text": metric_name, "font": {"size": 10}},
            "overlaying": "y",
            "side": "right",
            "showgrid": False,
        },
    }
    return with_empty_state({"data": traces, "layout": layout})


def in_effect(decision) -> int | None:
    """The replicas running after a decision: the desired count only if it was executed (or nothing changed)."""
    if decision.executed or decision.result == "unchanged":
        return decision.desired_replicas
    return decision.current_replicas


def decisions_figure(
    *, decisions: Sequence, metric: Sequence[MetricPoint], metric_name: str, target: float | None, until: datetime
) -> dict:
    """Replicas in effect after each decision (oldest first) over the driving rule's metric; the last count holds
    until `until`. Dry-run decisions add a dashed "would set" line, since they change nothing."""
    points = [(d.created_at, in_effect(d)) for d in decisions if in_effect(d) is not None]
    if points and points[-1][0] < until:
        points.append((until, points[-1][1]))
    figure = replicas_figure(replicas=points, metric=metric, metric_name=metric_name, target=target)
    dry = [(d.created_at, d.desired_replicas) for d in decisions if d.dry_run and d.desired_replicas is not None]
    if dry:
        figure["data"].append(
            {
                "type": "scatter",
                "x": [ts for ts, _ in dry],
                "y": [count for _, count in dry],
                "name": "dry run: would set",
                "mode": "lines",
                "line": {"shape": "hv", "width": 1.6, "dash": "dot", "color": PALETTE[3]},
                "hovertemplate": "would set %{y}<extra></extra>",
            }
        )
    return figure


def replay_figure(*, replay) -> dict:
    """What-if: the replicas a rule would have chosen against the metric recorded."""
    return replicas_figure(
        replicas=[(s.ts, s.replicas) for s in replay.steps],
        metric=[MetricPoint(s.ts, s.metric) for s in replay.steps],
        metric_name=f"{replay.rule} (recorded)",
        target=replay.target,
        replicas_name="replicas (what-if)",
    )
