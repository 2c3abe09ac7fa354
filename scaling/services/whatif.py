"""What-if replay: run a rule over its recorded metric history, before it is enabled.

The same pure evaluator as beat runs once per history step with the service's behaviour and limits,
its own simulated recommendations and scale events, and a simple plant model: the metric recorded
at each step was produced by the replicas running then (`start_replicas` at the first step, the
service's applied count by default), so with `value` targets the load is metric x replicas and the
simulated metric is load / simulated replicas; `average` targets are totals and replay unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise

from django.utils import timezone

from core.errors import InvalidInput
from scaling import evaluator as ev
from scaling.models import ScaledService, ScalingRule
from scaling.schedules import cron_matches
from scaling.selectors import MetricPoint, rule_history
from scaling.services.evaluation import behavior_of

MAX_REPLAY_DAYS = 30


@dataclass(frozen=True)
class ReplayStep:
    ts: datetime
    metric: float  # recorded
    simulated_metric: float  # what it would have been with the simulated replicas
    replicas: int
    recommended: int
    explanation: tuple[str, ...]


@dataclass(frozen=True)
class Replay:
    rule: str
    service: str
    target: float
    steps: tuple[ReplayStep, ...]
    changes: int
    within_tolerance_share: float | None  # share of steps whose simulated metric is within 10 % of target
    start: datetime
    end: datetime
    start_replicas: int = 1  # the count before the first step (clamped to min/max)


def replay_points(
    *,
    points: list[MetricPoint],
    service: ScaledService,
    rule: ScalingRule,
    start_replicas: int,
    step_seconds: int | None = None,
) -> tuple[ReplayStep, ...]:
    """Pure: the replica count the rule would have chosen at each recorded point."""
    up, down = behavior_of(service, "up"), behavior_of(service, "down")
    schedules = [s for s in service.schedules.all() if s.enabled] if service.pk else []
    replicas = max(service.min_replicas, min(service.max_replicas, start_replicas))
    base_replicas = max(start_replicas, 1)
    recommendations: list[ev.Recommendation] = []
    events: list[ev.ScaleEvent] = []
    steps: list[ReplayStep] = []
    for point in points:
        if rule.target_type == ScalingRule.TargetType.VALUE:
            simulated = point.value * base_replicas / max(replicas, 1)
        else:
            simulated = point.value
        local = timezone.localtime(point.ts) if timezone.is_aware(point.ts) else point.ts
        decision = ev.evaluate(
            ev.EvaluationInput(
                current=replicas,
                rules=[ev.RuleInput(rule.name, rule.target_value, simulated, rule.tolerance, rule.target_type)],
                min_replicas=service.min_replicas,
                max_replicas=service.max_replicas,
                now=point.ts,
                scale_up=up,
                scale_down=down,
                recommendations=recommendations,
                events=events,
                active_schedules=[
                    ev.ScheduleWindow(s.name, s.min_replicas, s.max_replicas)
                    for s in schedules
                    if cron_matches(s.cron, local)
                ],
            )
        )
        horizon = point.ts - timedelta(seconds=max(up.stabilization_seconds, down.stabilization_seconds, 1800))
        recommendations = [r for r in recommendations if r.at > horizon]
        events = [e for e in events if e.at > horizon]
        recommendations.append(ev.Recommendation(point.ts, decision.recommended))
        if decision.desired != replicas:
            events.append(ev.ScaleEvent(point.ts, decision.desired - replicas))
        steps.append(
            ReplayStep(point.ts, point.value, simulated, decision.desired, decision.recommended, decision.steps)
        )
        replicas = decision.desired
    return tuple(steps)


def rule_replay(
    *,
    rule: ScalingRule,
    start: datetime,
    end: datetime,
    start_replicas: int | None = None,
    max_points: int = 1500,
) -> Replay:
    if end <= start:
        raise InvalidInput("The end of the range must be after its start.", field="end")
    if end - start > timedelta(days=MAX_REPLAY_DAYS):
        raise InvalidInput(f"Replay at most {MAX_REPLAY_DAYS} days.", field="start")
    service = rule.service
    if start_replicas is None:
        start_replicas = service.applied_replicas or service.observed_replicas or service.min_replicas or 1
    if start_replicas < 1:
        raise InvalidInput("start_replicas must be at least 1.", field="start_replicas")
    points = rule_history(rule=rule, start=start, end=end, max_points=max_points)
    steps = replay_points(points=points, service=service, rule=rule, start_replicas=start_replicas)
    first = max(service.min_replicas, min(service.max_replicas, start_replicas))
    changes = sum(1 for a, b in pairwise([first, *(s.replicas for s in steps)]) if a != b)
    within = None
    if steps:
        close = sum(1 for s in steps if abs(s.simulated_metric - rule.target_value) <= 0.1 * rule.target_value)
        within = close / len(steps)
    return Replay(
        rule=rule.name,
        service=service.name,
        target=rule.target_value,
        steps=steps,
        changes=changes,
        within_tolerance_share=within,
        start=start,
        end=end,
        start_replicas=first,
    )


@dataclass(frozen=True)
class ExplainedStep:
    before: int
    step: ReplayStep  # the last step of the stretch: its explanation stands for all
    held: bool  # the rule recommended another count than the one chosen (stabilization, policy, min/max)
    since: datetime | None = None  # a stretch of identical holds starts here (None: a single step)
    points: int = 1


def replay_explained_steps(replay: Replay) -> list[ExplainedStep]:
    """Every step that changed the count, or was held away from the rule's recommendation, with the count before.

    A replay that "does nothing" while the metric is far off its target is held by something (the
    max replicas, a window, a policy): those steps are the ones an operator needs explained.
    Consecutive holds at the same count with the same recommendation are one stretch, not 30 rows.
    """
    explained: list[ExplainedStep] = []
    previous = replay.start_replicas
    for step in replay.steps:
        held = step.recommended != step.replicas
        if step.replicas != previous or held:
            last = explained[-1] if explained else None
            same_hold = (
                held
                and last is not None
                and last.held
                and last.step.replicas == step.replicas == previous
                and last.step.recommended == step.recommended
            )
            if same_hold:
                explained[-1] = ExplainedStep(previous, step, True, last.since or last.step.ts, last.points + 1)
            else:
                explained.append(ExplainedStep(previous, step, held))
        previous = step.replicas
    return explained
