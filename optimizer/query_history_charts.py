"""One query's charts over time (calls per bucket, mean time), with a vertical marker where a recommendation
was applied on its target; built from query_history_selectors data (tests check the figure data).

Figures are plain dicts in plotly's figure schema; core/charts.py says why.
"""

from __future__ import annotations

from core.charts import PALETTE, figure_json, time_layout, value_axis, value_hover, with_empty_state
from optimizer.query_history_selectors import AppliedMarker, QueryHistory

SERVING, OTHER = "#2f9e6e", "#98a2b3"  # an apply that served this query, and any other apply on the target
SPARSE_POINTS = 3


def marker_shapes(markers: list[AppliedMarker]) -> tuple[list[dict], list[dict]]:
    """A vertical line per apply (solid when it served the query) and its short label at the top:
    "#<recommendation>" (the full title is in the label's hover text and listed under the chart)."""
    shapes, annotations = [], []
    for marker in markers:
        colour = SERVING if marker.serves_query else OTHER
        shapes.append(
            {
                "type": "line",
                "xref": "x",
                "yref": "paper",
                "x0": marker.applied_at,
                "x1": marker.applied_at,
                "y0": 0,
                "y1": 1,
                "line": {"color": colour, "width": 1.5, "dash": "solid" if marker.serves_query else "dot"},
            }
        )
        annotations.append(
            {
                "x": marker.applied_at,
                "xref": "x",
                "y": 1,
                "yref": "paper",
                "yanchor": "bottom",
                "text": f"#{marker.recommendation_id or marker.run_id} applied",
                "hovertext": marker.title,
                "showarrow": False,
                "font": {"size": 10, "color": colour},
            }
        )
    return shapes, annotations


def _figure(history: QueryHistory, trace: dict, unit: str) -> dict:
    shapes, annotations = marker_shapes(history.markers)
    layout = {
        **time_layout(height=220, x_range=(history.start, history.end)),
        "showlegend": False,
        "yaxis": value_axis(unit),
        "shapes": shapes,
        "annotations": annotations,
        "margin": {"t": 24 if annotations else 8},
    }
    if not trace["x"]:
        layout["shapes"] = []  # the empty state says so in words; no lines over nothing
    return with_empty_state({"data": [trace], "layout": layout})


def calls_figure(history: QueryHistory) -> dict:
    buckets = history.buckets
    trace = {
        "type": "bar",
        "name": "calls",
        "x": [b.at for b in buckets],
        "y": [b.calls for b in buckets],
        "marker": {"color": PALETTE[0]},
        "hovertemplate": "%{y:,} calls<extra></extra>",
    }
    return _figure(history, trace, "")


def mean_time_figure(history: QueryHistory) -> dict:
    buckets = [b for b in history.buckets if b.calls]
    trace = {
        "type": "scatter",
        "name": "mean time",
        "x": [b.at for b in buckets],
        "y": [round(b.mean_time_ms, 4) for b in buckets],
        "mode": "lines+markers" if len(buckets) < SPARSE_POINTS else "lines",
        "line": {"width": 1.8, "color": PALETTE[2]},
        "marker": {"size": 5, "color": PALETTE[2]},
        "hovertemplate": f"{value_hover('ms')}<extra>mean time</extra>",
    }
    return _figure(history, trace, "ms")


def query_history_json(history: QueryHistory) -> dict[str, str]:
    return {"calls": figure_json(calls_figure(history)), "mean_time": figure_json(mean_time_figure(history))}
