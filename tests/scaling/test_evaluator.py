"""The evaluator reproduces the Kubernetes HPA's documented behaviour, case by case.

Cases quote the HPA documentation ("Horizontal Pod Autoscaling": algorithm details, configurable
scaling behavior, default behavior) where they come from it. Times are seconds before `NOW`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from scaling.evaluator import (
    DEFAULT_SCALE_DOWN,
    DEFAULT_SCALE_UP,
    Behavior,
    EvaluationInput,
    Policy,
    Recommendation,
    RuleInput,
    ScaleEvent,
    ScheduleWindow,
    evaluate,
)

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
NO_STABILIZATION_DOWN = Behavior(0, DEFAULT_SCALE_DOWN.policies, "Max")
# Docs, "Scaling Policies": 4 pods or 10 % per minute, whichever allows the bigger change.
DOCS_DOWN = Behavior(0, (Policy("Pods", 4, 60), Policy("Percent", 10, 60)), "Max")


def ago(seconds: int) -> datetime:
    return NOW - timedelta(seconds=seconds)


def run(current, rules, *, lo=1, hi=100, up=DEFAULT_SCALE_UP, down=DEFAULT_SCALE_DOWN, recs=(), events=(), sched=()):
    return evaluate(
        EvaluationInput(
            current=current,
            rules=[RuleInput(name, target, value, *rest) for name, target, value, *rest in rules],
            min_replicas=lo,
            max_replicas=hi,
            now=NOW,
            scale_up=up,
            scale_down=down,
            recommendations=[Recommendation(ago(s), r) for s, r in recs],
            events=[ScaleEvent(ago(s), c) for s, c in events],
            active_schedules=sched,
        )
    )


CASES = [
    # --- algorithm details: desired = ceil(current x metric / target) ------------------------
    ("docs: 200m against 100m doubles the replicas", {"current": 2, "rules": [("cpu", 100, 200)]}, 2, 4),
    (
        "docs: 50m against 100m halves the replicas",
        {"current": 4, "rules": [("cpu", 100, 50)], "down": NO_STABILIZATION_DOWN},
        4,
        2,
    ),
    ("ceil rounds a fractional proposal up", {"current": 3, "rules": [("cpu", 50, 60)]}, 3, 4),
    ("tolerance: ratio 1.05 is within the default 0.1, no scaling", {"current": 4, "rules": [("cpu", 100, 105)]}, 4, 4),
    ("tolerance: ratio 0.9 is at the edge, no scaling", {"current": 10, "rules": [("cpu", 100, 90)]}, 10, 10),
    ("tolerance: ratio 1.11 is outside it, scale", {"current": 10, "rules": [("cpu", 100, 111)]}, 10, 12),
    ("a rule's own tolerance of 0.3 holds 1.25", {"current": 4, "rules": [("cpu", 100, 125, 0.3)]}, 4, 4),
    (
        "several metrics: the highest proposal wins",
        {"current": 4, "rules": [("cpu", 50, 100), ("queue", 10, 5), ("latency", 1, 1.5)]},
        4,
        8,
    ),
    # --- missing metrics ------------------------------------------------------------------------
    (
        "missing data never scales down: another rule's scale-down is skipped",
        {"current": 6, "rules": [("cpu", 100, 20), ("queue", 10, None)], "down": NO_STABILIZATION_DOWN},
        6,
        6,
    ),
    (
        "missing data does not stop a scale-up the other rules ask for",
        {"current": 2, "rules": [("cpu", 50, 100), ("queue", 10, None)]},
        2,
        4,
    ),
    ("no data at all: stay", {"current": 3, "rules": [("cpu", 50, None)], "down": NO_STABILIZATION_DOWN}, 3, 3),
    # --- stabilization ----------------------------------------------------------------------------
    (
        "default scale-down window: the highest recommendation of the last 300 s holds",
        {"current": 8, "rules": [("cpu", 100, 50)], "recs": [(290, 8), (120, 6), (15, 5)]},
        8,
        8,
    ),
    (
        "scale-down window: recommendations older than 300 s are forgotten",
        {"current": 8, "rules": [("cpu", 100, 50)], "recs": [(301, 8), (200, 6)]},
        8,
        6,
    ),
    (
        "scale-up window of 60 s: the lowest recommendation in it is used",
        {"current": 2, "rules": [("cpu", 50, 150)], "up": Behavior(60, DEFAULT_SCALE_UP.policies), "recs": [(30, 3)]},
        2,
        3,
    ),
    (
        "default scale-up has no window: a burst is followed at once",
        {"current": 2, "rules": [("cpu", 50, 150)], "recs": [(10, 2), (5, 2)]},
        2,
        6,
    ),
    # --- default policies: scale up 100 % or 4 pods per 15 s, whichever is bigger ----------------
    ("default scale-up from 1: 4 pods beats 100 %", {"current": 1, "rules": [("cpu", 10, 200)]}, 1, 5),
    ("default scale-up from 10: 100 % beats 4 pods", {"current": 10, "rules": [("cpu", 10, 100)]}, 10, 20),
    (
        "default scale-up: a change made 10 s ago counts against the 15 s period",
        {"current": 5, "rules": [("cpu", 10, 100)], "events": [(10, 4)]},
        5,
        5,
    ),
    (
        "default scale-up: a change 16 s ago is outside the period",
        {"current": 5, "rules": [("cpu", 10, 100)], "events": [(16, 4)]},
        5,
        10,
    ),
    (
        "default scale-down: 100 % per 15 s allows going straight to the recommendation",
        {"current": 10, "rules": [("cpu", 100, 10)], "down": NO_STABILIZATION_DOWN},
        10,
        1,
    ),
    # --- docs: scaleDown Pods 4 / Percent 10 per 60 s, select Max ---------------------------------
    (
        "docs: 80 replicas to 10, the first step removes 8",
        {"current": 80, "rules": [("cpu", 100, 12.5)], "down": DOCS_DOWN},
        80,
        72,
    ),
    (
        "docs: at 72 replicas 10 % is 7.2, rounded to remove 8",
        {"current": 72, "rules": [("cpu", 100, 10)], "down": DOCS_DOWN, "events": [(61, -8)]},
        72,
        64,
    ),
    (
        "docs: below 40 replicas the Pods policy (4) wins",
        {"current": 30, "rules": [("cpu", 100, 10)], "down": DOCS_DOWN},
        30,
        26,
    ),
    (
        "docs: within the period the earlier removal counts",
        {"current": 72, "rules": [("cpu", 100, 10)], "down": DOCS_DOWN, "events": [(30, -8)]},
        72,
        72,
    ),
    (
        "selectPolicy Min picks the policy with the smallest change",
        {"current": 80, "rules": [("cpu", 100, 10)], "down": Behavior(0, DOCS_DOWN.policies, "Min")},
        80,
        76,
    ),
    (
        "selectPolicy Disabled on scale-down: never scale down",
        {"current": 10, "rules": [("cpu", 100, 10)], "down": Behavior(0, DOCS_DOWN.policies, "Disabled")},
        10,
        10,
    ),
    (
        "selectPolicy Disabled on scale-up: never scale up",
        {"current": 2, "rules": [("cpu", 10, 100)], "up": Behavior(0, DEFAULT_SCALE_UP.policies, "Disabled")},
        2,
        2,
    ),
    (
        "docs: Percent 900 lets 1 replica become 10 in one period",
        {"current": 1, "rules": [("cpu", 10, 1000)], "up": Behavior(0, (Policy("Percent", 900, 60),))},
        1,
        10,
    ),
    # --- min/max and schedules ---------------------------------------------------------------------
    ("max clamps the result", {"current": 8, "rules": [("cpu", 10, 100)], "hi": 12}, 8, 12),
    (
        "min clamps the result",
        {"current": 4, "rules": [("cpu", 100, 10)], "lo": 3, "down": NO_STABILIZATION_DOWN},
        4,
        3,
    ),
    (
        "a schedule override raises the minimum (business hours)",
        {"current": 2, "rules": [("cpu", 100, 100)], "sched": [ScheduleWindow("business hours", 6, 20)]},
        2,
        6,
    ),
    (
        "a schedule override lowers the maximum",
        {"current": 4, "rules": [("cpu", 10, 100)], "hi": 50, "sched": [ScheduleWindow("night", 1, 5)]},
        4,
        5,
    ),
    # --- average (per replica) targets: desired = ceil(metric / target) ---------------------------
    (
        "average target: a backlog of 95 at 10 per replica wants 10, default policy allows 6",
        {"current": 2, "rules": [("queue", 10, 95, 0.1, "average")]},
        2,
        6,
    ),
    (
        "average target within tolerance: 21 at 10 per replica over 2 replicas",
        {"current": 2, "rules": [("queue", 10, 21, 0.1, "average")]},
        2,
        2,
    ),
]


@pytest.mark.parametrize(("case", "kwargs", "current", "expected"), CASES, ids=[c[0] for c in CASES])
def test_evaluator_matches_documented_hpa_behaviour(case, kwargs, current, expected):
    decision = run(**kwargs)
    assert decision.current == current
    assert decision.desired == expected, "\n".join(decision.steps)


def test_evaluator_is_deterministic():
    kwargs = {"current": 30, "rules": [("cpu", 100, 10), ("q", 5, None)], "down": DOCS_DOWN, "recs": [(10, 12)]}
    assert run(**kwargs) == run(**kwargs)


def test_explanation_names_every_step_in_plain_language():
    decision = run(current=80, rules=[("cpu", 100, 12.5)], down=DOCS_DOWN, lo=2)
    text = "\n".join(decision.steps)
    assert "cpu: 12.5 against a target of 100 is 0.12x the target: ceil(80 x 0.125) = 10 replicas." in text
    assert "Highest proposal: 10 (cpu)." in text
    assert "Policy: scaling down is limited to 72 by Percent 10 % per 60 s (select Max)." in text
    assert decision.steps[-1] == "Decision: scale down from 80 to 72."
    assert decision.limited_by == "policy"


def test_missing_data_explanation_and_confidence():
    decision = run(current=6, rules=[("cpu", 100, 20), ("queue", 10, None)], down=NO_STABILIZATION_DOWN)
    assert any("missing data never scales down" in step for step in decision.steps)
    assert decision.limited_by == "missing data"
    assert decision.confidence == 0.5  # one of two rules had data


def test_confidence_drops_when_rules_disagree_or_the_change_is_held_back():
    agreeing = run(current=4, rules=[("cpu", 50, 100), ("mem", 50, 90)])
    disagreeing = run(current=4, rules=[("cpu", 50, 100), ("mem", 50, 10)])
    held = run(current=8, rules=[("cpu", 100, 50)], recs=[(100, 8)])
    assert agreeing.confidence == 1.0
    assert disagreeing.confidence == 0.8
    assert held.confidence == 0.9 and held.limited_by == "stabilization"


def test_recommended_is_recorded_before_stabilization():
    decision = run(current=8, rules=[("cpu", 100, 50)], recs=[(100, 8)])
    assert decision.recommended == 4  # what the history keeps for the next ticks
    assert decision.stabilized == 8
