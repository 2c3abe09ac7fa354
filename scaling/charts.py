"""Plotly figures for scaling pages, built from selector and replay data (tests check the figure data).

Both charts put replicas as a step line (line shape "hv": a count holds until the next decision) on
the left axis over the metric that drives them on the right axis, with the rule's target dashed.
Figures are plain dicts in plotly's figure schema; core/charts.py says why.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime

from core.charts import EMPTY_TEXT, PALETTE, time_layout, value_axis, value_hover, with_empty_state
from scaling.selectors import MetricPoint

REPLICAS_COLOUR = PALETTE[0]
METRIC_COLOUR = PALETTE[2]
SIMULATED_COLOUR = PALETTE[4]


def replicas_figure(
    *,
    replicas: Sequence[tuple[datetime, int]],
    metric: Sequence[MetricPoint] = (),
    metric_name: str = "",
    target: float | None = None,
    replicas_name: str = "replicas",
    metric_unit: str = "",
    height: int = 280,
    empty_text: str = EMPTY_TEXT,
) -> dict:
    """Replicas (left axis, whole numbers) over the metric (right axis, formatted by metric_unit); with no
    replicas and no metric the figure says `empty_text` instead of drawing empty axes, and with a metric but no
    replicas it says so over the plot and hides the replicas axis (plotly would draw it from -1 to 6)."""
    traces = []
    if metric:
        traces.append(
            _metric_trace(
                metric, name=metric_name or "metric", unit=metric_unit, line={"width": 1.4, "color": METRIC_COLOUR}
            )
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
    # No replicas line at all rather than an empty legend entry (the annotation below says why).
    traces += (
        []
        if metric and not replicas
        else [
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
        ]
    )
    most_replicas = max((count for _, count in replicas), default=1)
    layout = {
        **time_layout(height=height),
        "yaxis": {
            "title": {"text": "replicas", "font": {"size": 10}},
            # Replicas are whole numbers: ticks every whole step (about five of them), never a 1.5; a quarter of
            # headroom keeps the highest count below the top, where the metric's target line usually runs.
            "range": [0, math.ceil(most_replicas * 1.25)],
            "dtick": max(1, math.ceil(most_replicas / 5)),
        },
        "yaxis2": {
            **value_axis(metric_unit),
            "title": {"text": metric_name, "font": {"size": 10}},
            "overlaying": "y",
            "side": "right",
            "showgrid": False,
            # Round values in the metric's unit (10 %, 20 %), not ticks lined up with the replicas' grid
            # (plotly.js 4 syncs an overlaying axis to the grid it lies on: 24.6 %, 49.2 %).
            "tickmode": "auto",
        },
    }
    if metric and not replicas:
        layout["yaxis"]["visible"] = False
        layout["annotations"] = [
            {
                "text": empty_text,
                "showarrow": False,
                "xref": "paper",
                "yref": "paper",
                "x": 0.5,
                "y": 0.5,
                # On a light box: readable over the metric's lines wherever they run.
                "bgcolor": "rgba(255,255,255,0.85)",
                "borderpad": 4,
                "font": {"size": 13, "color": "#667085"},
            }
        ]
    return with_empty_state({"data": traces, "layout": layout}, text=empty_text)


def _metric_trace(points: Sequence[MetricPoint], *, name: str, unit: str, line: dict) -> dict:
    """A metric on the right axis; its hover gives the value in its unit and the line's name."""
    return {
        "type": "scatter",
        "x": [p.ts for p in points],
        "y": [p.value for p in points],
        "name": name,
        "mode": "lines",
        "yaxis": "y2",
        "line": line,
        "hovertemplate": value_hover(unit) + "<extra>" + name + "</extra>",
    }


def in_effect(decision) -> int | None:
    """The replicas running after a decision: the desired count only if it was executed (or nothing changed)."""
    if decision.executed or decision.result == "unchanged":
        return decision.desired_replicas
    return decision.current_replicas


NO_DECISION_YET = "No scaling decision recorded yet"
NO_DECISION_IN_RANGE = "No scaling decision in this range"


def decisions_figure(
    *,
    decisions: Sequence,
    metric: Sequence[MetricPoint],
    metric_name: str,
    target: float | None,
    until: datetime,
    start: datetime | None = None,
    current_replicas: int | None = None,
    decided_before: bool = False,
    metric_unit: str = "",
) -> dict:
    """Replicas in effect after each decision (oldest first) over the driving rule's metric; the last count holds
    until `until`. Dry-run decisions add a dashed "would set" line, since they change nothing.

    With no decision in the range, `current_replicas` (the count Perfpilot set or the executor observed) is
    drawn as a level from `start`; without one either, the chart says that no decision was recorded (yet, or
    in this range when `decided_before`) instead of leaving an unexplained gap or an empty replicas axis."""
    points = [(d.created_at, in_effect(d)) for d in decisions if in_effect(d) is not None]
    no_decision = NO_DECISION_IN_RANGE if decided_before else NO_DECISION_YET
    replicas_name = "replicas"
    if not points and current_replicas is not None:
        points = [(start or (metric[0].ts if metric else until), current_replicas)]
        replicas_name = f"replicas now ({no_decision[0].lower()}{no_decision[1:]})"
    if points and points[-1][0] < until:
        points.append((until, points[-1][1]))
    figure = replicas_figure(
        replicas=points,
        metric=metric,
        metric_name=metric_name,
        target=target,
        replicas_name=replicas_name,
        metric_unit=metric_unit,
        empty_text=no_decision if not decisions else EMPTY_TEXT,
    )
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


def replay_figure(*, replay, metric_unit: str = "", per_replica: bool = False) -> dict:
    """What-if: the replicas a rule would have chosen, over the metric recorded and the simulated metric the rule
    reasoned on (the recorded load shared by the simulated replicas; per replica for `value` targets)."""
    figure = replicas_figure(
        replicas=[(s.ts, s.replicas) for s in replay.steps],
        metric=[MetricPoint(s.ts, s.metric) for s in replay.steps],
        metric_name=f"{replay.rule} recorded",
        target=replay.target,
        replicas_name="replicas (what-if)",
        metric_unit=metric_unit,
    )
    if replay.steps:
        simulated_name = f"{replay.rule} simulated" + (" per replica" if per_replica else "")
        # Next to the recorded metric (the first trace), so the legend reads recorded, simulated, target.
        figure["data"].insert(
            1,
            _metric_trace(
                [MetricPoint(s.ts, s.simulated_metric) for s in replay.steps],
                name=simulated_name,
                unit=metric_unit,
                line={"width": 1.8, "dash": "dot", "color": SIMULATED_COLOUR},
            ),
        )
    return figure
