"""Plotly figures for control-plane pages, built from selector data (tests check the data).

Figures here and in the apps' charts.py modules are plain dicts in plotly's figure schema
(`{"data": [...], "layout": {...}}`), the JSON plotly.js draws: plotly.graph_objects would validate
and deep-copy every value, which costs tens of milliseconds per chart on pages that refresh every
few seconds. Tests load figures into `plotly.graph_objects.Figure` to prove they are valid.
"""

from __future__ import annotations

import orjson

from core.health import CheckResult


def figure_json(figure: dict) -> str:
    """A figure dict as the JSON plotly.js reads (datetimes as ISO 8601 strings)."""
    return orjson.dumps(figure, option=orjson.OPT_NON_STR_KEYS).decode()


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
        "paper_bgcolor": "rgba(0,0,0,0)",
        "plot_bgcolor": "rgba(0,0,0,0)",
    }
    return {"data": [bar], "layout": layout}
