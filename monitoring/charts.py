"""Plotly figures for monitoring pages, built from selector data (tests check the figure data).

Figures are plain dicts in plotly's figure schema; core/charts.py says why.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from core.charts import PALETTE, time_layout, value_axis, value_hover, with_empty_state


@dataclass(frozen=True)
class Line:
    name: str
    points: list  # selector Points: .ts, .avg, .min, .max


SPARSE_POINTS = 3  # a line with fewer points shows its markers: a lone point draws no line


def timeseries_figure(
    *,
    lines: list[Line],
    unit: str = "",
    height: int = 220,
    show_band: bool = False,
    show_legend: bool | None = None,
    x_range: tuple[datetime, datetime] | None = None,
) -> dict:
    """One trace per line (with a min/max band when asked), values formatted by unit; the x axis spans
    x_range when given, so a young series is drawn where it belongs in the chosen window. The legend
    shows when there is more than one line unless show_legend says otherwise."""
    hover_value = value_hover(unit)
    traces = []
    for index, line in enumerate(lines):
        colour = PALETTE[index % len(PALETTE)]
        xs = [p.ts for p in line.points]
        if show_band and line.points:
            band = {"mode": "lines", "line": {"width": 0}, "showlegend": False, "hoverinfo": "skip", "type": "scatter"}
            traces.append({**band, "x": xs, "y": [p.max for p in line.points]})
            traces.append(
                {
                    **band,
                    "x": xs,
                    "y": [p.min for p in line.points],
                    "fill": "tonexty",
                    "fillcolor": "rgba(31,111,235,0.12)",
                }
            )
        traces.append(
            {
                "type": "scatter",
                "x": xs,
                "y": [p.avg for p in line.points],
                "mode": "lines+markers" if len(line.points) < SPARSE_POINTS else "lines",
                "marker": {"size": 5, "color": colour},
                "name": line.name,
                "line": {"width": 1.8, "color": colour},
                "hovertemplate": f"{hover_value}<extra>{line.name}</extra>",
            }
        )
    layout = {
        **time_layout(height=height, x_range=x_range),
        "showlegend": len(lines) > 1 if show_legend is None else show_legend,
        "yaxis": value_axis(unit),
    }
    return with_empty_state({"data": traces, "layout": layout})
