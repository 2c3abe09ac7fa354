from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import plotly.graph_objects as go

from core.charts import figure_json
from scaling.charts import decisions_figure, replay_figure, replicas_figure
from scaling.models import ScalingDecision
from scaling.selectors import MetricPoint
from scaling.services.whatif import Replay, ReplayStep

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def _metric(values: list[float]) -> list[MetricPoint]:
    return [MetricPoint(T0 + timedelta(minutes=i), v) for i, v in enumerate(values)]


def _decision(minute: int, *, current: int, desired: int, result: str, executed: bool = False, dry_run: bool = False):
    return ScalingDecision(
        created_at=T0 + timedelta(minutes=minute),
        current_replicas=current,
        desired_replicas=desired,
        result=result,
        executed=executed,
        dry_run=dry_run,
    )


def test_replicas_are_a_step_line_on_the_left_axis_over_the_metric_and_its_dashed_target_on_the_right():
    figure = replicas_figure(
        replicas=[(T0, 1), (T0 + timedelta(minutes=2), 3)], metric=_metric([40, 80, 60]), metric_name="load", target=50
    )
    metric, target, replicas = figure["data"]
    assert (metric["name"], metric["y"], metric["yaxis"]) == ("load", [40, 80, 60], "y2")
    assert (target["x"], target["y"], target["line"]["dash"]) == ([T0, T0 + timedelta(minutes=2)], [50, 50], "dash")
    assert (replicas["y"], replicas["line"]["shape"]) == ([1, 3], "hv")
    assert "yaxis" not in replicas  # the left axis
    layout = figure["layout"]
    assert layout["yaxis"]["title"]["text"] == "replicas"
    assert (layout["yaxis2"]["title"]["text"], layout["yaxis2"]["overlaying"], layout["yaxis2"]["side"]) == (
        "load",
        "y",
        "right",
    )


def test_without_a_metric_only_the_replicas_are_drawn():
    figure = replicas_figure(replicas=[(T0, 2)], target=50)
    assert [trace["name"] for trace in figure["data"]] == ["replicas"]


def test_decisions_draw_the_replicas_in_effect_until_now_and_what_dry_runs_would_set():
    decisions = [
        _decision(0, current=1, desired=2, result="scaled", executed=True),
        _decision(1, current=2, desired=4, result="dry_run", dry_run=True),  # changes nothing: 2 stay
        _decision(2, current=2, desired=2, result="unchanged"),
    ]
    until = T0 + timedelta(minutes=5)
    figure = decisions_figure(decisions=decisions, metric=_metric([60, 70]), metric_name="load", target=50, until=until)
    running = next(t for t in figure["data"] if t["name"] == "replicas")
    would = next(t for t in figure["data"] if t["name"] == "dry run: would set")
    assert running["y"] == [2, 2, 2, 2] and running["x"][-1] == until  # the last count holds until `until`
    assert (would["x"], would["y"], would["line"]["shape"]) == ([T0 + timedelta(minutes=1)], [4], "hv")


def _replay(recorded_simulated_replicas: list[tuple[float, float, int]]) -> Replay:
    steps = tuple(
        ReplayStep(T0 + timedelta(minutes=i), metric=m, simulated_metric=sim, replicas=r, recommended=r, explanation=())
        for i, (m, sim, r) in enumerate(recorded_simulated_replicas)
    )
    return Replay(
        rule="load",
        service="web",
        target=50,
        steps=steps,
        changes=1,
        within_tolerance_share=None,
        start=T0,
        end=T0 + timedelta(minutes=len(steps)),
    )


def test_the_replay_draws_what_if_replicas_over_the_recorded_and_the_simulated_metric():
    # 98 % recorded at 1 replica: shared by 2 simulated replicas the rule reasons on 49 % per replica.
    figure = replay_figure(replay=_replay([(98.0, 98.0, 1), (98.0, 49.0, 2)]), metric_unit="%", per_replica=True)
    recorded, simulated, target, replicas = figure["data"]
    assert (recorded["name"], recorded["y"], recorded["yaxis"]) == ("load recorded", [98.0, 98.0], "y2")
    assert (simulated["name"], simulated["y"], simulated["yaxis"]) == ("load simulated per replica", [98.0, 49.0], "y2")
    assert simulated["x"] == recorded["x"] and simulated["line"]["dash"] == "dot"
    assert (target["name"], target["y"]) == ("target", [50, 50])
    assert (replicas["name"], replicas["y"]) == ("replicas (what-if)", [1, 2])
    go.Figure(figure)


def test_the_replay_hover_gives_each_metric_in_its_unit_with_its_name():
    figure = replay_figure(replay=_replay([(98.0, 98.0, 1)]), metric_unit="%", per_replica=True)
    recorded, simulated = figure["data"][:2]
    assert recorded["hovertemplate"] == "%{y:.1f}%<extra>load recorded</extra>"
    assert simulated["hovertemplate"] == "%{y:.1f}%<extra>load simulated per replica</extra>"
    assert figure["layout"]["yaxis2"]["ticksuffix"] == "%"


def test_an_average_target_replay_names_its_simulated_metric_without_per_replica():
    figure = replay_figure(replay=_replay([(7.0, 7.0, 1)]), metric_unit="/s")
    assert [trace["name"] for trace in figure["data"]] == [
        "load recorded",
        "load simulated",
        "target",
        "replicas (what-if)",
    ]
    assert figure["data"][1]["hovertemplate"] == "%{y:.3~s}/s<extra>load simulated</extra>"


def test_an_empty_replay_draws_no_simulated_metric_and_says_so():
    figure = replay_figure(replay=_replay([]), metric_unit="%")
    assert [a["text"] for a in figure["layout"]["annotations"]] == ["No data in this range yet"]


def test_the_decisions_chart_formats_the_metric_axis_and_hover_in_the_rules_unit():
    decisions = [_decision(0, current=1, desired=2, result="scaled", executed=True)]
    figure = decisions_figure(
        decisions=decisions,
        metric=_metric([52.6, 39.5]),
        metric_name="load",
        target=50,
        until=T0 + timedelta(minutes=2),
        metric_unit="%",
    )
    assert figure["layout"]["yaxis2"]["ticksuffix"] == "%"
    metric = next(t for t in figure["data"] if t["name"] == "load")
    assert metric["hovertemplate"] == "%{y:.1f}%<extra>load</extra>"


def test_with_no_decision_the_set_or_observed_count_is_drawn_as_the_current_level():
    start, until = T0, T0 + timedelta(hours=6)
    figure = decisions_figure(
        decisions=[],
        metric=_metric([60, 70]),
        metric_name="load",
        target=50,
        until=until,
        start=start,
        current_replicas=2,
    )
    level = next(t for t in figure["data"] if t["name"].startswith("replicas now"))
    assert (level["x"], level["y"]) == ([start, until], [2, 2])
    assert level["name"] == "replicas now (no scaling decision recorded yet)"
    assert "annotations" not in figure["layout"]


def test_with_no_decision_and_no_count_the_chart_says_no_decision_was_recorded_yet_over_the_metric():
    figure = decisions_figure(decisions=[], metric=_metric([60, 70]), metric_name="load", target=50, until=T0)
    assert [t["name"] for t in figure["data"]] == ["load", "target"]  # no empty replicas entry in the legend
    layout = figure["layout"]
    assert [a["text"] for a in layout["annotations"]] == ["No scaling decision recorded yet"]
    assert layout["yaxis"]["visible"] is False  # no replicas axis from -1 to 6
    assert layout["yaxis2"].get("visible", True) is True
    go.Figure(figure)


def test_with_decisions_only_before_the_range_the_chart_says_none_fell_in_it():
    figure = decisions_figure(
        decisions=[], metric=_metric([60]), metric_name="load", target=50, until=T0, decided_before=True
    )
    assert [a["text"] for a in figure["layout"]["annotations"]] == ["No scaling decision in this range"]


def test_the_figures_are_valid_for_plotly_and_their_json_matches_plotlys_own():
    decisions = [_decision(0, current=1, desired=3, result="dry_run", dry_run=True)]
    figure = decisions_figure(
        decisions=decisions, metric=_metric([1.5, 2.5]), metric_name="load", target=2, until=T0 + timedelta(minutes=1)
    )
    validated = go.Figure(figure)  # raises on any property plotly does not know
    ours = json.loads(figure_json(figure))
    theirs = json.loads(validated.to_json())
    assert [(t["x"], t["y"]) for t in ours["data"]] == [(t["x"], t["y"]) for t in theirs["data"]]
    assert ours["layout"]["yaxis2"] == theirs["layout"]["yaxis2"]


def test_with_no_decisions_and_no_metric_the_replicas_chart_shows_the_empty_state_not_an_axis():
    figure = decisions_figure(decisions=[], metric=[], metric_name="cpu", target=50, until=T0)
    layout = figure["layout"]
    assert [annotation["text"] for annotation in layout["annotations"]] == ["No scaling decision recorded yet"]
    assert layout["yaxis"]["visible"] is False and layout["yaxis2"]["visible"] is False
    go.Figure(figure)


def test_replicas_ticks_are_whole_steps_and_the_legend_is_above_the_plot():
    figure = replicas_figure(
        replicas=[(T0, 1), (T0 + timedelta(minutes=2), 3)], metric=_metric([40, 80]), metric_name="cpu"
    )
    assert figure["layout"]["yaxis"]["dtick"] == 1  # no 1.5 tick between 1 and 2 replicas
    many = replicas_figure(replicas=[(T0, 4), (T0 + timedelta(minutes=2), 40)])
    assert many["layout"]["yaxis"]["dtick"] == 8
    assert figure["layout"]["legend"]["yanchor"] == "bottom" and figure["layout"]["legend"]["y"] > 1


def test_the_highest_replica_count_stays_below_the_top_and_the_metric_axis_keeps_its_own_round_ticks():
    figure = replicas_figure(replicas=[(T0, 2)], metric=_metric([49, 51]), metric_name="cpu", target=50)
    assert figure["layout"]["yaxis"]["range"] == [0, 3]  # 2 replicas do not sit on the target line at the top
    assert figure["layout"]["yaxis2"]["tickmode"] == "auto"  # not synced to the replicas grid (24.6 %, 49.2 %)
