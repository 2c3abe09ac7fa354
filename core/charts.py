"""Plotly figures for control-plane pages, built from selector data (tests check the data), and the
parts every app's charts.py shares: the palette, the layout of charts over time, the JSON encoding.

Figures here and in the apps' charts.py modules are plain dicts in plotly's figure schema
(`{"data": [...], "layout": {...}}`), the JSON plotly.js draws: plotly.graph_objects would validate
and deep-copy every value, which costs tens of milliseconds per chart on pages that refresh every
few seconds. Tests load figures into `plotly.graph_objects.Figure` to prove they are valid.
"""

from __future__ import annotations

from datetime import datetime

import orjson

from core.health import CheckResult

PALETTE = ["#1f6feb", "#2f9e6e", "#d9822b", "#8b5cf6", "#d9534f", "#0ea5a4", "#b45309", "#64748b"]
GRID_COLOUR = "#eef1f6"
# Charts sit on the page's cards, so they draw no background of their own.
TRANSPARENT_BACKGROUND = {"paper_bgcolor": "rgba(0,0,0,0)", "plot_bgcolor": "rgba(0,0,0,0)"}


def figure_json(figure: dict) -> str:
    """A figure dict as the JSON plotly.js reads (datetimes as ISO 8601 strings)."""
    return orjson.dumps(figure, option=orjson.OPT_NON_STR_KEYS).decode()


def time_layout(
    *, height: int, margin: dict, legend_y: float, x_range: tuple[datetime, datetime] | None = None
) -> dict:
    """The layout charts over time share: a light grid, the legend in a row below, one hover label for
    every line at a time, and the user's zoom kept across live refreshes. Callers add their y axes."""
    return {
        "height": height,
        "margin": margin,
        "legend": {"orientation": "h", "y": legend_y, "font": {"size": 10}},
        **TRANSPARENT_BACKGROUND,
        "xaxis": {"gridcolor": GRID_COLOUR, **({"range": list(x_range)} if x_range else {})},
        "hovermode": "x unified",
        "uirevision": "keep",
    }


def health_latency_figure(checks: list[CheckResult]) -> dict:
    latencies = [c.latency_ms for c in checks]
    bar = {
        "type": "bar",
        "x": latencies,
        "y": [c.name for c in checks],
        "orientation": "h",
        "marker": {"color": ["#2f9e6e" if c.ok else "#d9534f" for c in checks]},
        "text": [f"{v:.1f} ms" for v in latencies],
        "textposition": "auto",
        "hovertemplate": "%{y}: %{x:.2f} ms<extra></extra>",
    }
    layout = {
        "margin": {"l": 70, "r": 10, "t": 10, "b": 30},
        "height": 180,
        "xaxis": {"title": {"text": "check latency (ms)"}},
        "yaxis": {"autorange": "reversed"},
        **TRANSPARENT_BACKGROUND,
    }
    return {"data": [bar], "layout": layout}
