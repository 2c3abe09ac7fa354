from __future__ import annotations

import json

import plotly.graph_objects as go

from optimizer.charts import BeforeAfter, before_after_figure, before_after_json
from optimizer.models import OptimizationRun


def test_before_and_after_are_grouped_bars_per_subject():
    data = BeforeAfter(title="Index size", unit="bytes", labels=["a", "b"], before=[10, 20], after=[5, 15])
    figure = before_after_figure(data)
    before, after = figure["data"]
    assert (before["name"], before["x"], before["y"]) == ("before", ["a", "b"], [10, 20])
    assert (after["name"], after["x"], after["y"]) == ("after", ["a", "b"], [5, 15])
    assert before["marker"]["color"] != after["marker"]["color"]
    assert figure["layout"]["barmode"] == "group"
    assert figure["layout"]["yaxis"]["ticksuffix"] == "B"  # with SI prefixes: 1.5GB
    go.Figure(figure)  # raises on any property plotly does not know


def test_a_vacuum_run_charts_dead_tuples_per_table_as_json():
    run = OptimizationRun(
        tuner="vacuum",
        action=OptimizationRun.Action.RUN,
        evidence_before={"actions": {"public.t": {"dead_tuples": 1500}}},
        evidence_after={"actions": {"public.t": {"dead_tuples": 10}}},
    )
    figure = json.loads(before_after_json(run))
    assert [(t["name"], t["x"], t["y"]) for t in figure["data"]] == [
        ("before", ["public.t"], [1500]),
        ("after", ["public.t"], [10]),
    ]


def test_a_run_with_nothing_measured_after_has_no_chart():
    assert before_after_json(OptimizationRun(tuner="vacuum", evidence_before={}, evidence_after={})) is None
