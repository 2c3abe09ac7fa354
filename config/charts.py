"""Plotly figures for control-plane pages, built from selector data (tests check the data)."""

from __future__ import annotations

import plotly.graph_objects as go

from config.health import CheckResult


def health_latency_figure(checks: list[CheckResult]) -> go.Figure:
    names = [c.name for c in checks]
    latencies = [c.latency_ms for c in checks]
    colours = ["#2f9e6e" if c.ok else "#d9534f" for c in checks]
    figure = go.Figure(
        go.Bar(
            x=latencies,
            y=names,
            orientation="h",
            marker_color=colours,
            text=[f"{v:.1f} ms" for v in latencies],
            textposition="auto",
            hovertemplate="%{y}: %{x:.2f} ms<extra></extra>",
        )
    )
    figure.update_layout(
        margin={"l": 70, "r": 10, "t": 10, "b": 30},
        height=180,
        xaxis_title="check latency (ms)",
        yaxis={"autorange": "reversed"},
        paper_bgcolor="rgba(0,0,0,0)",
        plot_bgcolor="rgba(0,0,0,0)",
    )
    return figure
