"""The alert state machine on its own: pending, for, firing, keep_firing_for, resolve."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from alerts.services import state as sm

T0 = datetime(2026, 1, 1, tzinfo=UTC)
BREACH = sm.Observation("warning", 91.0, 90.0)
CALM = sm.Observation(None, 50.0)


def run(observations, *, for_seconds=0, keep=0, start=None):
    snapshot, transitions = start or sm.Snapshot(), []
    for seconds, observation in observations:
        transition = sm.step(
            snapshot,
            observation,
            now=T0 + timedelta(seconds=seconds),
            for_seconds=for_seconds,
            keep_firing_for_seconds=keep,
        )
        transitions.append(transition)
        snapshot = transition.after
    return snapshot, transitions


def test_a_breach_is_pending_until_for_has_passed_then_fires():
    snapshot, transitions = run([(0, BREACH), (30, BREACH), (60, BREACH)], for_seconds=60)
    assert [t.after.state for t in transitions] == ["pending", "pending", "firing"]
    assert snapshot.since == T0 and snapshot.fired_at == T0 + timedelta(seconds=60)
    assert [t.notifies for t in transitions] == [False, False, True]


def test_a_pending_alert_that_recovers_goes_back_to_inactive_without_notifying():
    _, transitions = run([(0, BREACH), (10, CALM)], for_seconds=60)
    assert transitions[-1].after.state == "inactive"
    assert not any(t.notifies for t in transitions)


def test_for_zero_fires_at_the_first_breach():
    snapshot, _ = run([(0, BREACH)])
    assert snapshot.state == "firing"


def test_a_firing_alert_resolves_when_the_value_recovers_and_notifies():
    snapshot, transitions = run([(0, BREACH), (10, CALM)])
    assert snapshot.state == "resolved" and snapshot.resolved_at == T0 + timedelta(seconds=10)
    assert transitions[-1].notifies


def test_keep_firing_for_rides_out_flapping():
    flapping = [(0, BREACH), (10, CALM), (20, BREACH), (30, CALM), (40, BREACH), (50, CALM)]
    snapshot, transitions = run(flapping, keep=60)
    assert [t.after.state for t in transitions] == ["firing"] * 6
    assert sum(t.notifies for t in transitions) == 1  # fired once, never resolved and re-fired
    snapshot, _ = run([(110, CALM)], keep=60, start=snapshot)
    assert snapshot.state == "resolved"


def test_without_keep_firing_for_flapping_fires_and_resolves_each_time():
    flapping = [(0, BREACH), (10, CALM), (20, BREACH), (30, CALM)]
    _, transitions = run(flapping)
    assert [t.after.state for t in transitions] == ["firing", "resolved", "firing", "resolved"]


def test_escalating_to_critical_while_firing_is_a_change_that_notifies():
    critical = sm.Observation("critical", 99.0, 95.0)
    _, transitions = run([(0, BREACH), (10, critical)])
    assert transitions[-1].changed and transitions[-1].notifies
    assert transitions[-1].after.threshold == 95.0


def test_a_resolved_alert_breaching_again_starts_a_new_pending_episode():
    snapshot, _ = run([(0, BREACH), (10, CALM), (20, BREACH)], for_seconds=0)
    assert snapshot.state == "firing" and snapshot.since == T0 + timedelta(seconds=20)
    pending, _ = run([(0, BREACH), (5, CALM), (20, BREACH)], for_seconds=0, start=sm.Snapshot())
    assert pending.resolved_at is None


def test_manual_resolve_of_a_firing_alert_notifies():
    snapshot, _ = run([(0, BREACH)])
    transition = sm.resolve(snapshot, now=T0 + timedelta(seconds=5))
    assert transition.after.state == "resolved" and transition.notifies
