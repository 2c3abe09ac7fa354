"""The scaling evaluator: a pure, deterministic function from inputs to a decision.

It follows the Kubernetes Horizontal Pod Autoscaler (autoscaling/v2) step by step:

1. each rule proposes desired = ceil(current x metric / target) (or ceil(metric / target) for a
   per-replica average target), unless |metric / target - 1| is within its tolerance (default 0.1),
   when it proposes the current count;
2. the highest proposal across rules wins;
3. missing data never causes a scale-down: when a rule has no data and the others would scale down,
   the count stays (they may still scale up), as the HPA does for metrics it cannot fetch;
4. stabilization over the recommendation history: scaling up uses the lowest recommendation of the
   scale-up window, scaling down the highest of the scale-down window (defaults 0 s and 300 s);
5. policies: each Pods/Percent policy allows a change relative to the count at the start of its
   period (the scale events within periodSeconds are taken back); selectPolicy Max picks the policy
   allowing the biggest change, Min the smallest, Disabled forbids that direction;
6. min/max replicas, replaced while a scheduled override's cron matches, clamp the result.

Nothing here reads the clock, the database or the network: everything comes in as arguments, so
the same inputs always give the same decision (tests, what-if replay and the benchmark rely on it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

PODS = "Pods"
PERCENT = "Percent"
SELECT_MAX = "Max"
SELECT_MIN = "Min"
SELECT_DISABLED = "Disabled"
TARGET_VALUE = "value"
TARGET_AVERAGE = "average"
DEFAULT_TOLERANCE = 0.1


@dataclass(frozen=True)
class Policy:
    type: str  # Pods or Percent
    value: int
    period_seconds: int

    def describe(self) -> str:
        amount = f"{self.value} %" if self.type == PERCENT else f"{self.value} replica{'s' if self.value != 1 else ''}"
        return f"{amount} per {self.period_seconds} s"


@dataclass(frozen=True)
class Behavior:
    """Scaling rules for one direction (HPAScalingRules)."""

    stabilization_seconds: int
    policies: tuple[Policy, ...]
    select: str = SELECT_MAX


DEFAULT_SCALE_UP = Behavior(0, (Policy(PERCENT, 100, 15), Policy(PODS, 4, 15)), SELECT_MAX)
DEFAULT_SCALE_DOWN = Behavior(300, (Policy(PERCENT, 100, 15),), SELECT_MAX)


@dataclass(frozen=True)
class RuleInput:
    name: str
    target: float
    value: float | None  # None: no data
    tolerance: float = DEFAULT_TOLERANCE
    target_type: str = TARGET_VALUE
    unit: str = ""
    error: str = ""  # why the value is None when it is not simply missing (a PromQL rule's error)


@dataclass(frozen=True)
class Recommendation:
    """A past recommendation (the desired count before stabilization), as the HPA keeps them."""

    at: datetime
    replicas: int


@dataclass(frozen=True)
class ScaleEvent:
    """A past change actually made: +n up, -n down."""

    at: datetime
    change: int


@dataclass(frozen=True)
class ScheduleWindow:
    name: str
    min_replicas: int
    max_replicas: int


@dataclass(frozen=True)
class EvaluationInput:
    current: int
    rules: Sequence[RuleInput]
    min_replicas: int
    max_replicas: int
    now: datetime
    scale_up: Behavior = DEFAULT_SCALE_UP
    scale_down: Behavior = DEFAULT_SCALE_DOWN
    recommendations: Sequence[Recommendation] = ()
    events: Sequence[ScaleEvent] = ()
    active_schedules: Sequence[ScheduleWindow] = ()  # overrides whose cron matches `now`


@dataclass(frozen=True)
class Proposal:
    rule: str
    value: float | None
    target: float
    ratio: float | None
    desired: int | None  # None: no data
    within_tolerance: bool
    text: str

    def as_dict(self) -> dict:
        return {
            "rule": self.rule,
            "value": self.value,
            "target": self.target,
            "ratio": self.ratio,
            "desired": self.desired,
            "within_tolerance": self.within_tolerance,
            "text": self.text,
        }


@dataclass(frozen=True)
class Decision:
    current: int
    proposals: tuple[Proposal, ...]
    recommended: int  # after rules, tolerance and missing data: what the history records
    stabilized: int
    desired: int  # after policies and clamps: the choice
    min_replicas: int
    max_replicas: int
    limited_by: str  # "", "stabilization", "policy", "min", "max", "missing data"
    steps: tuple[str, ...]
    confidence: float
    has_data: bool = True
    extra: dict = field(default_factory=dict)

    @property
    def change(self) -> int:
        return self.desired - self.current

    @property
    def direction(self) -> str:
        return "up" if self.change > 0 else "down" if self.change < 0 else "none"


def _count(replicas: int) -> str:
    return f"{replicas} replica{'' if replicas == 1 else 's'}"


def _fmt(number: float) -> str:
    return f"{number:.4g}"


def _propose(rule: RuleInput, current: int) -> Proposal:
    unit = f" {rule.unit}" if rule.unit else ""
    if rule.value is None:
        why = rule.error or "no recent data"
        return Proposal(rule.name, None, rule.target, None, None, False, f"{rule.name}: {why}, so it proposes nothing.")
    if rule.target_type == TARGET_AVERAGE:
        # HPA AverageValue: usage ratio = metric / (target x current); desired = ceil(metric / target).
        ratio = rule.value / (rule.target * current) if current > 0 else math.inf
        base = f"{rule.name}: {_fmt(rule.value)}{unit} over {current} replicas against {_fmt(rule.target)}{unit} each"
        raw = rule.value / rule.target
    else:
        ratio = rule.value / rule.target
        base = f"{rule.name}: {_fmt(rule.value)}{unit} against a target of {_fmt(rule.target)}{unit}"
        raw = current * ratio
    if math.isfinite(ratio) and abs(ratio - 1.0) <= rule.tolerance:
        text = (
            f"{base} is {ratio:.2f}x the target, within the ±{rule.tolerance * 100:.0f} % tolerance: "
            f"it proposes staying at {current}."
        )
        return Proposal(rule.name, rule.value, rule.target, ratio, current, True, text)
    desired = math.ceil(raw - 1e-9)  # a float like 6.0000000001 must not become 7
    if rule.target_type == TARGET_AVERAGE:
        text = f"{base}: ceil({_fmt(rule.value)} / {_fmt(rule.target)}) = {_count(desired)}."
    else:
        text = f"{base} is {ratio:.2f}x the target: ceil({current} x {ratio:.3g}) = {_count(desired)}."
    return Proposal(rule.name, rule.value, rule.target, ratio, desired, False, text)


def _change_in_period(events: Sequence[ScaleEvent], now: datetime, period_seconds: int, up: bool) -> int:
    cutoff = now - timedelta(seconds=period_seconds)
    return sum(abs(e.change) for e in events if e.at > cutoff and (e.change > 0) == up and e.change != 0)


def policy_limit(
    current: int, events: Sequence[ScaleEvent], behavior: Behavior, now: datetime, *, up: bool
) -> tuple[int, str]:
    """The furthest count the direction's policies allow now, and which policy set it.

    Each policy starts from the count at the start of its period (the changes made within
    periodSeconds are taken back); select Max keeps the policy allowing the biggest change.
    """
    direction = "up" if up else "down"
    if behavior.select == SELECT_DISABLED or not behavior.policies:
        return current, f"scaling {direction} is disabled"
    chosen: int | None = None
    chosen_policy = behavior.policies[0]
    sign = 1 if up else -1
    for policy in behavior.policies:
        added = _change_in_period(events, now, policy.period_seconds, up=True)
        deleted = _change_in_period(events, now, policy.period_seconds, up=False)
        start = current - added + deleted
        if policy.type == PODS:
            proposed = start + sign * policy.value
        elif up:  # Percent rounds up, or a small count could never grow (the HPA does the same)
            proposed = math.ceil(start * (1 + policy.value / 100) - 1e-9)
        else:  # and truncates going down, as the HPA's int32 conversion does
            proposed = math.floor(start * (1 - policy.value / 100) + 1e-9)
        bigger_change = chosen is None or sign * proposed > sign * chosen
        if bigger_change == (behavior.select == SELECT_MAX) or chosen is None:
            chosen, chosen_policy = proposed, policy
    return chosen, f"{chosen_policy.type} {chosen_policy.describe()} (select {behavior.select})"


def _stabilize(data: EvaluationInput, recommended: int) -> tuple[int, str]:
    now = data.now
    up_cutoff = now - timedelta(seconds=data.scale_up.stabilization_seconds)
    down_cutoff = now - timedelta(seconds=data.scale_down.stabilization_seconds)
    up_floor = recommended  # lowest recommendation in the scale-up window
    down_ceiling = recommended  # highest recommendation in the scale-down window
    for rec in data.recommendations:
        if rec.at > up_cutoff:
            up_floor = min(up_floor, rec.replicas)
        if rec.at > down_cutoff:
            down_ceiling = max(down_ceiling, rec.replicas)
    result = data.current
    if result < up_floor:
        result = up_floor
    if result > down_ceiling:
        result = down_ceiling
    if result == recommended:
        return result, f"Stabilization: nothing in the windows changes it ({recommended})."
    if recommended > data.current:
        return result, (
            f"Stabilization: scaling up uses the lowest recommendation of the last "
            f"{data.scale_up.stabilization_seconds} s, {up_floor}, so {result} instead of {recommended}."
        )
    return result, (
        f"Stabilization: scaling down uses the highest recommendation of the last "
        f"{data.scale_down.stabilization_seconds} s, {down_ceiling}, so {result} instead of {recommended}."
    )


def _limits(data: EvaluationInput) -> tuple[int, int, str]:
    if not data.active_schedules:
        return data.min_replicas, data.max_replicas, ""
    low = max(s.min_replicas for s in data.active_schedules)
    high = max(max(s.max_replicas for s in data.active_schedules), low)
    names = ", ".join(s.name for s in data.active_schedules)
    return low, high, names


def evaluate(data: EvaluationInput) -> Decision:
    """The decision for one service at data.now, with a plain-language explanation of each step."""
    current = data.current
    steps: list[str] = []
    proposals = tuple(_propose(rule, current) for rule in data.rules)
    steps.extend(p.text for p in proposals)
    with_data = [p for p in proposals if p.desired is not None]
    missing = [p for p in proposals if p.desired is None]
    limited_by = ""

    # 2-3. Highest proposal; tolerance is in each proposal; missing data never scales down.
    if not proposals:
        recommended = current
        steps.append(f"No enabled rule: nothing proposes a change, so the recommendation is {current}.")
    elif not with_data:
        recommended = current
        steps.append(f"No rule has recent data: staying at {current}.")
        limited_by = "missing data"
    else:
        best = max(with_data, key=lambda p: p.desired)
        recommended = best.desired
        steps.append(f"Highest proposal: {recommended} ({best.rule}).")
        if missing and recommended < current:
            names = ", ".join(p.rule for p in missing)
            steps.append(
                f"{names} had no data and the others would scale down to {recommended}: "
                f"missing data never scales down, so the recommendation stays at {current}."
            )
            recommended = current
            limited_by = "missing data"

    # 4. Stabilization over the history of recommendations.
    stabilized, text = _stabilize(data, recommended)
    steps.append(text)
    if stabilized != recommended:
        limited_by = "stabilization"

    # 5. Policies: how far one step may go.
    desired = stabilized
    if stabilized > current:
        limit, policy = policy_limit(current, data.events, data.scale_up, data.now, up=True)
        limit = max(limit, current)
        if stabilized > limit:
            steps.append(f"Policy: scaling up is limited to {limit} by {policy}.")
            desired, limited_by = limit, "policy"
        else:
            steps.append(f"Policy: {policy} allows up to {limit}; {stabilized} is within it.")
    elif stabilized < current:
        limit, policy = policy_limit(current, data.events, data.scale_down, data.now, up=False)
        limit = min(limit, current)
        if stabilized < limit:
            steps.append(f"Policy: scaling down is limited to {limit} by {policy}.")
            desired, limited_by = limit, "policy"
        else:
            steps.append(f"Policy: {policy} allows down to {limit}; {stabilized} is within it.")

    # 6. Min/max, or a scheduled override's, clamp the result.
    low, high, schedule_names = _limits(data)
    where = f" (schedule {schedule_names})" if schedule_names else ""
    if desired < low:
        steps.append(f"Clamp: below the minimum of {low}{where}, so {low}.")
        desired, limited_by = low, "min"
    elif desired > high:
        steps.append(f"Clamp: above the maximum of {high}{where}, so {high}.")
        desired, limited_by = high, "max"
    elif schedule_names:
        steps.append(f"Clamp: within {low}-{high} set by schedule {schedule_names}.")

    if desired > current:
        steps.append(f"Decision: scale up from {current} to {desired}.")
    elif desired < current:
        steps.append(f"Decision: scale down from {current} to {desired}.")
    else:
        steps.append(f"Decision: stay at {current}.")

    return Decision(
        current=current,
        proposals=proposals,
        recommended=recommended,
        stabilized=stabilized,
        desired=desired,
        min_replicas=low,
        max_replicas=high,
        limited_by=limited_by,
        steps=tuple(steps),
        confidence=_confidence(proposals, recommended, current, limited_by),
        has_data=bool(with_data),
    )


def _confidence(proposals: Sequence[Proposal], recommended: int, current: int, limited_by: str) -> float:
    """How much the decision rests on complete, agreeing data, from 0 to 1.

    The share of rules with data, times 0.8 when the rules with data disagree on the direction
    (one wants up, another down), times 0.9 when stabilization or a policy held the change back
    (the count will move again on later ticks).
    """
    if not proposals:
        return 0.0
    with_data = [p for p in proposals if p.desired is not None]
    score = len(with_data) / len(proposals)
    directions = {(p.desired > current) - (p.desired < current) for p in with_data}
    if 1 in directions and -1 in directions:
        score *= 0.8
    if limited_by in ("stabilization", "policy"):
        score *= 0.9
    return round(score, 2)
