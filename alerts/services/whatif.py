"""What-if replay of a PromQL alert rule: when it would have been pending and firing over a past range.

The expression is read as a range matrix and each element's points are fed, in order, through the same
state machine the evaluation uses (alerts.services.state), so the replay cannot drift from the real rules.
A step without a point for an element is that element absent: no breach, as in the evaluation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from alerts.models import AlertRule
from alerts.services import state as sm
from alerts.services.evaluation import (
    promql_alert_labels,
    promql_classify,
    promql_elements_check,
    promql_query_failures,
)

REPLAY_RANGES = {"1h": 3600, "6h": 6 * 3600, "24h": 24 * 3600}
MAX_REPLAY_STEPS = 500  # the step grows with the range so a replay reads at most this many points per element


@dataclass
class Episode:
    labels: dict[str, str]
    pending_from: datetime
    firing_from: datetime | None = None  # None: recovered before `for` elapsed
    resolved_at: datetime | None = None  # when it resolved (or went back to inactive); None: still up at the end


@dataclass(frozen=True)
class Replay:
    range: str
    start: datetime
    end: datetime
    step_seconds: int
    episodes: list[Episode]

    @property
    def firings(self) -> int:
        return sum(1 for episode in self.episodes if episode.firing_from is not None)


def replay_step_seconds(rule: AlertRule, seconds: int) -> int:
    return max(rule.eval_interval_seconds, math.ceil(seconds / MAX_REPLAY_STEPS))


def _element_episodes(rule: AlertRule, labels: dict[str, str], values: dict[int, float], steps: list[int]) -> list:
    episodes: list[Episode] = []
    snapshot = sm.Snapshot()
    for t_ms in steps:
        now = datetime.fromtimestamp(t_ms / 1000, tz=UTC)
        value = values.get(t_ms)
        observation = sm.Observation(None, None) if value is None else promql_classify(rule=rule, value=value)
        transition = sm.step(
            snapshot,
            observation,
            now=now,
            for_seconds=rule.for_seconds,
            keep_firing_for_seconds=rule.keep_firing_for_seconds,
        )
        before, after = transition.before.state, transition.after.state
        up = (sm.PENDING, sm.FIRING)
        if before not in up and after in up:
            episodes.append(Episode(labels, pending_from=transition.after.since))
        if after == sm.FIRING and episodes[-1].firing_from is None:
            episodes[-1].firing_from = transition.after.fired_at
        if before in up and after not in up:
            episodes[-1].resolved_at = now
        snapshot = transition.after
    return episodes


def rule_replay(*, rule: AlertRule, replay_range: str, now: datetime) -> Replay:
    """The rule's episodes over the `replay_range` (1h, 6h or 24h) ending at `now`, oldest first.
    RuleQueryFailed with the engine's or the source's words when the query fails."""
    from monitoring.promql.sources import range_matrix

    seconds = REPLAY_RANGES[replay_range]
    step = replay_step_seconds(rule, seconds)
    end_ms = round(now.timestamp() * 1000)
    start_ms = end_ms - seconds * 1000
    with promql_query_failures():
        matrix = range_matrix(
            rule.expression, start_ms=start_ms, end_ms=end_ms, step_ms=step * 1000, source=rule.promql_source
        )
    promql_elements_check(len(matrix))
    steps = list(range(start_ms, end_ms + 1, step * 1000))
    episodes = []
    for element_labels, points in matrix:
        labels = promql_alert_labels(rule, element_labels)
        episodes += _element_episodes(rule, labels, dict(points), steps)
    episodes.sort(key=lambda e: (e.pending_from, sorted(e.labels.items())))
    start = datetime.fromtimestamp(start_ms / 1000, tz=UTC)
    return Replay(replay_range, start, start + timedelta(seconds=seconds), step, episodes)
