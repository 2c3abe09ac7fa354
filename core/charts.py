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
TEXT_COLOUR = "#344054"
# Charts sit on the page's cards, so they draw no background of their own.
TRANSPARENT_BACKGROUND = {"paper_bgcolor": "rgba(0,0,0,0)", "plot_bgcolor": "rgba(0,0,0,0)"}
EMPTY_TEXT = "No data in this range yet"

# What every figure shares. Pages send it once ({% figure_template %} of core/templatetags/charts.py)
# and static/js/perfpilot.js sets it as each figure's layout.template, so a figure carries only its own
# data and the few layout values that differ from these.
FIGURE_TEMPLATE = {
    "layout": {
        "font": {
            "family": "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif",
            "size": 11,
            "color": TEXT_COLOUR,
        },
        "colorway": PALETTE,
        **TRANSPARENT_BACKGROUND,
        # automargin on both axes: the room the tick labels need (the date line at the bottom included)
        # is added to these margins rather than cut off.
        "margin": {"l": 8, "r": 8, "t": 8, "b": 8},
        "xaxis": {"gridcolor": GRID_COLOUR, "automargin": True, "zeroline": False},
        "yaxis": {"gridcolor": GRID_COLOUR, "automargin": True, "zeroline": False},
        "hoverlabel": {"font": {"size": 11}},
        # The toolbar over a transparent chart would take its colour from nothing: light, like the cards.
        "modebar": {"bgcolor": "rgba(255,255,255,0.9)", "color": "#667085", "activecolor": PALETTE[0]},
    }
}

# A legend in a row above the plot: it never covers the lines or the dates below, and plotly grows the
# top margin by the rows a long legend wraps to on a narrow screen.
LEGEND_ABOVE = {"orientation": "h", "x": 0, "xanchor": "left", "y": 1.02, "yanchor": "bottom", "font": {"size": 10}}

# Axis tick labels and hover text per stored unit (Measurement.unit). Plotly's SI prefixes give
# "1.5GB", "200kB/s", "12ms" and "3.2k/s"; a percentage is a plain number with "%".
SI_UNITS = {"bytes": "B", "bytes/s": "B/s", "/s": "/s", "s": "s", "": ""}


def value_axis(unit: str) -> dict:
    """The y axis properties that show values in `unit`: tick labels carry the unit, so no axis title is needed."""
    if unit == "%":
        # At least 0-1 %: a share of a few millionths (wraparound) reads as about 0 %, not as "400n%".
        return {"ticksuffix": "%", "rangemode": "tozero", "autorangeoptions": {"include": [0, 1]}}
    if unit == "s":
        # Durations below a second read as "20ms" (plotly's SI prefixes start at 10^3 and 10^-3 by default).
        return {"ticksuffix": "s", "exponentformat": "SI", "minexponent": 1, "rangemode": "tozero"}
    if unit in SI_UNITS:
        return {"ticksuffix": SI_UNITS[unit], "exponentformat": "SI", "rangemode": "tozero"}
    return {"ticksuffix": f" {unit}", "rangemode": "tozero"}


def value_hover(unit: str) -> str:
    """A hovertemplate value in `unit`, formatted like the axis (d3-format: "~s" is SI without trailing zeros)."""
    if unit == "%":
        return "%{y:.1f}%"
    if unit in SI_UNITS:
        return "%{y:.3~s}" + SI_UNITS[unit]
    return "%{y:.4~g} " + unit


def figure_json(figure: dict) -> str:
    """A figure dict as the JSON plotly.js reads (datetimes as ISO 8601 strings)."""
    return orjson.dumps(figure, option=orjson.OPT_NON_STR_KEYS).decode()


def time_layout(*, height: int, x_range: tuple[datetime, datetime] | None = None) -> dict:
    """The layout charts over time share: the legend above the plot, one hover label for every line at a
    time, and the user's zoom kept across live refreshes. Callers add their y axes."""
    return {
        "height": height,
        "legend": LEGEND_ABOVE,
        "xaxis": {"type": "date", **({"range": list(x_range)} if x_range else {})},
        "hovermode": "x unified",
        "uirevision": "keep",
    }


def with_empty_state(figure: dict, *, text: str = EMPTY_TEXT) -> dict:
    """A figure with no point in any trace says so in words (`text`, when a chart knows why it is empty)
    instead of drawing empty default axes (plotly's -1 to 6 range for a chart with nothing on it)."""
    if any(len(trace.get("x") or trace.get("y") or []) for trace in figure["data"]):
        return figure
    layout = figure["layout"]
    for name in [key for key in layout if key.startswith(("xaxis", "yaxis"))]:
        layout[name] = {**layout[name], "visible": False}
    layout["showlegend"] = False
    layout["annotations"] = [
        {
            "text": text,
            "showarrow": False,
            "xref": "paper",
            "yref": "paper",
            "x": 0.5,
            "y": 0.5,
            "font": {"size": 13, "color": "#667085"},
        }
    ]
    return figure


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
        "height": 180,
        "xaxis": {"title": {"text": "check latency"}, "ticksuffix": " ms", "rangemode": "tozero"},
        "yaxis": {"autorange": "reversed"},
    }
    return {"data": [bar], "layout": layout}
