"""core.charts: the figure template, unit formatting, the legend's place and the empty state (figure data)."""

from __future__ import annotations

import plotly.graph_objects as go
import pytest

from core.charts import (
    EMPTY_TEXT,
    FIGURE_TEMPLATE,
    LEGEND_ABOVE,
    time_layout,
    value_axis,
    value_hover,
    with_empty_state,
)


def test_the_figure_template_is_valid_for_plotly_and_small():
    go.layout.Template(FIGURE_TEMPLATE)  # raises on any property plotly does not know
    layout = FIGURE_TEMPLATE["layout"]
    assert layout["xaxis"]["automargin"] and layout["yaxis"]["automargin"]  # the date line is never cut off
    assert len(str(FIGURE_TEMPLATE)) < 1000  # not plotly's full default template (about 10 KB per chart)


@pytest.mark.parametrize(
    "unit,suffix,hover",
    [
        ("%", "%", "%{y:.1f}%"),
        ("bytes", "B", "%{y:.3~s}B"),
        ("bytes/s", "B/s", "%{y:.3~s}B/s"),
        ("/s", "/s", "%{y:.3~s}/s"),
        ("s", "s", "%{y:.3~s}s"),
        ("", "", "%{y:.3~s}"),
        ("ms", " ms", "%{y:.4~g} ms"),
    ],
)
def test_values_are_formatted_by_their_unit(unit, suffix, hover):
    axis = value_axis(unit)
    assert axis["ticksuffix"] == suffix
    assert (axis.get("exponentformat") == "SI") == (unit not in ("%", "ms"))
    assert value_hover(unit) == hover


def test_tiny_percentages_and_short_durations_stay_readable():
    assert value_axis("%")["autorangeoptions"]["include"] == [0, 1]  # never "400n%"
    assert value_axis("s")["minexponent"] == 1  # 0.02 s reads "20ms"
    go.Figure({"data": [], "layout": {"yaxis": value_axis("%"), "yaxis2": value_axis("s")}})


def test_the_legend_sits_in_a_row_above_the_plot():
    layout = time_layout(height=200)
    assert layout["legend"] == LEGEND_ABOVE
    assert (LEGEND_ABOVE["orientation"], LEGEND_ABOVE["yanchor"]) == ("h", "bottom")
    assert LEGEND_ABOVE["y"] > 1  # outside the plot area: it never covers lines or the date labels


def test_a_figure_without_points_says_so_instead_of_drawing_empty_axes():
    figure = {"data": [{"type": "scatter", "x": [], "y": []}], "layout": {"yaxis": {}, "yaxis2": {}, "xaxis": {}}}
    layout = with_empty_state(figure)["layout"]
    assert [annotation["text"] for annotation in layout["annotations"]] == [EMPTY_TEXT]
    assert not any(layout[axis]["visible"] for axis in ("xaxis", "yaxis", "yaxis2"))
    assert layout["showlegend"] is False
    go.Figure(figure)


def test_a_figure_with_points_is_left_as_it_is():
    figure = {"data": [{"type": "scatter", "x": [1], "y": [2]}], "layout": {"yaxis": {}}}
    assert "annotations" not in with_empty_state(figure)["layout"]
