"""The collector plug-in interface and its registry.

A collector reads one target and returns measurements; it never writes. The collection service
(monitoring.services.collection) turns counters into per-second rates, stores samples, and records
the target's health. Adding a kind = one module with a @register class + one test file.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import ClassVar, NamedTuple

from core.registry import UnknownPlugin, registry

logger = logging.getLogger(__name__)

GAUGE = "gauge"
COUNTER = "counter"  # cumulative; stored as a per-second rate between two collections
CUMULATIVE = "cumulative"  # a running total stored as sent (a Prometheus counter): PromQL's rate() reads it


class CollectorError(Exception):
    """The target could not be read. The message is shown to operators as the target's last error."""


@dataclass(frozen=True)
class Measurement:
    metric: str
    value: float
    labels: dict[str, str] = field(default_factory=dict)
    kind: str = GAUGE
    unit: str = ""


class StatementCounters(NamedTuple):
    """Cumulative pg_stat_statements counters of one normalized query.

    A named tuple, not a dataclass: a busy server has thousands of these per collection, and a
    tuple is built several times faster.
    """

    queryid: int
    database: str
    query: str
    calls: int
    total_time_ms: float
    rows: int
    shared_blks_hit: int
    shared_blks_read: int


@dataclass
class CollectResult:
    measurements: list[Measurement] = field(default_factory=list)
    statements: list[StatementCounters] | None = None  # postgres only; None when unavailable
    notes: list[str] = field(default_factory=list)  # degraded-but-working conditions, shown on the target page


class Collector:
    """Base class. Subclasses set kind and label and implement collect() and test_connection()."""

    kind: ClassVar[str]
    label: ClassVar[str]

    def __init__(self, target, *, state: dict | None = None, elapsed_seconds: float | None = None) -> None:
        self.target = target
        self.timeout = float(target.timeout_seconds)
        # Kept between collections (JSON-serialisable) for values over the interval, such as a
        # hit ratio from two counters; elapsed_seconds is the time since the previous collection.
        self.state: dict = state if state is not None else {}
        self.elapsed_seconds = elapsed_seconds

    def collect(self) -> CollectResult:
        """Read the target once. Raise CollectorError when it cannot be read."""
        raise NotImplementedError

    def test_connection(self) -> str:
        """Connect and describe what answered (e.g. "PostgreSQL 15.19"). Raise CollectorError on failure."""
        raise NotImplementedError


# Collector modules register themselves here (`@register`); monitoring's AppConfig discovers them.
register = registry.plugin("collectors")


def collector_for(target, *, state: dict | None = None, elapsed_seconds: float | None = None) -> Collector:
    try:
        cls = registry.get("collectors", target.kind)
    except UnknownPlugin as exc:
        raise CollectorError(f"no collector for kind {target.kind!r} ({exc.reason})") from exc
    return cls(target, state=state, elapsed_seconds=elapsed_seconds)
