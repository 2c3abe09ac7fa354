from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import plotly.graph_objects as go

from core.charts import figure_json
from monitoring.charts import Line, timeseries_figure
from monitoring.selectors.series import Point

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def _points(values: list[float]) -> list[Point]:
    return [Point(T0 + timedelta(minutes=i), v, v - 1, v + 1) for i, v in enumerate(values)]


def test_each_line_is_a_scatter_trace_of_its_averages_in_order():
    figure = timeseries_figure(lines=[Line("cpu", _points([1.0, 2.0])), Line("mem", _points([5.0]))], unit="%")
    cpu, mem = figure["data"]
    assert (cpu["name"], cpu["y"], cpu["x"]) == ("cpu", [1.0, 2.0], [T0, T0 + timedelta(minutes=1)])
    assert (mem["name"], mem["y"]) == ("mem", [5.0])
    assert cpu["line"]["color"] != mem["line"]["color"]
    assert figure["layout"]["showlegend"] is True
    assert figure["layout"]["yaxis"]["ticksuffix"] == "%"


def test_a_band_adds_min_and_max_traces_before_the_line():
    figure = timeseries_figure(lines=[Line("latency", _points([10.0, 20.0]))], show_band=True)
    upper, lower, line = figure["data"]
    assert upper["y"] == [11.0, 21.0] and lower["y"] == [9.0, 19.0]
    assert lower["fill"] == "tonexty" and not upper["showlegend"]
    assert line["y"] == [10.0, 20.0]


def test_the_figure_is_valid_for_plotly_and_its_json_matches_plotlys_own():
    figure = timeseries_figure(lines=[Line("a", _points([1.5, 2.5])), Line("b", [])], unit="ms", show_band=True)
    validated = go.Figure(figure)  # raises on any property plotly does not know
    ours = json.loads(figure_json(figure))
    theirs = json.loads(validated.to_json())
    assert [(t["x"], t["y"]) for t in ours["data"]] == [(t["x"], t["y"]) for t in theirs["data"]]
    assert ours["data"][0]["x"][0] == "2026-11-25T12:00:00+00:00"
    assert ours["layout"]["height"] == theirs["layout"]["height"]


def test_a_sparse_line_shows_its_markers_and_the_axis_spans_the_chosen_window():
    start, end = T0 - timedelta(hours=1), T0 + timedelta(minutes=5)
    figure = timeseries_figure(
        lines=[Line("new", _points([3.0])), Line("old", _points([1, 2, 3, 4]))], x_range=(start, end)
    )
    new, old = figure["data"]
    assert new["mode"] == "lines+markers" and old["mode"] == "lines"
    assert figure["layout"]["xaxis"]["range"] == [start, end]
    go.Figure(figure)
