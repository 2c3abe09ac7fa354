"""The alert state machine, as a pure function of the previous state and one observation.

inactive/resolved --breach--> pending --breach for `for`--> firing --no breach for keep_firing_for--> resolved
pending --no breach--> inactive (the episode never fired, so nobody is told)
A rule with for = 0 goes straight from a breach to firing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

INACTIVE, PENDING, FIRING, RESOLVED = "inactive", "pending", "firing", "resolved"


@dataclass(frozen=True)
class Snapshot:
    state: str = INACTIVE
    severity: str | None = None
    value: float | None = None
    threshold: float | None = None
    since: datetime | None = None
    fired_at: datetime | None = None
    resolved_at: datetime | None = None
    last_breach_at: datetime | None = None


@dataclass(frozen=True)
class Observation:
    """One evaluation: the severity breached (None = no breach), the value and the threshold crossed."""

    severity: str | None
    value: float | None
    threshold: float | None = None


@dataclass(frozen=True)
class Transition:
    before: Snapshot
    after: Snapshot
    note: str = ""

    @property
    def changed(self) -> bool:
        return self.before.state != self.after.state or (
            self.after.state == FIRING and self.before.severity != self.after.severity
        )

    @property
    def notifies(self) -> bool:
        """Whether receivers are told: it fired, its severity changed while firing, or it resolved."""
        if self.after.state == FIRING:
            return self.changed
        return self.after.state == RESOLVED and self.before.state == FIRING


def step(
    previous: Snapshot, observation: Observation, *, now: datetime, for_seconds: int, keep_firing_for_seconds: int
) -> Transition:
    """The next snapshot after one observation at `now`."""
    current = replace(previous, value=observation.value)
    breached = observation.severity is not None
    if breached:
        current = replace(current, severity=observation.severity, threshold=observation.threshold, last_breach_at=now)
        if previous.state in (INACTIVE, RESOLVED):
            current = replace(current, state=PENDING, since=now, fired_at=None, resolved_at=None)
        if current.state == PENDING and now - current.since >= timedelta(seconds=for_seconds):
            current = replace(current, state=FIRING, fired_at=now)
            return Transition(previous, current, f"breached for {for_seconds} s" if for_seconds else "breached")
        return Transition(previous, current, "breached" if previous.state != current.state else "")
    if previous.state == PENDING:
        return Transition(previous, replace(current, state=INACTIVE, since=None), "recovered before `for` elapsed")
    if previous.state == FIRING:
        quiet_since = previous.last_breach_at or previous.fired_at or now
        if now - quiet_since >= timedelta(seconds=keep_firing_for_seconds):
            return Transition(previous, replace(current, state=RESOLVED, resolved_at=now), "recovered")
        return Transition(previous, current, "")
    return Transition(previous, current, "")


def resolve(previous: Snapshot, *, now: datetime) -> Transition:
    """A manual resolve: firing or pending alerts become resolved at once."""
    if previous.state not in (PENDING, FIRING):
        return Transition(previous, previous, "")
    return Transition(previous, replace(previous, state=RESOLVED, resolved_at=now), "resolved by hand")
