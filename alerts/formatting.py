"""Alert values and thresholds as sentences people read: "2 GiB", "7 collections failed in a row".

Pages (through alerts' template filters) and Slack messages say the same thing. A metric's unit
comes from its series (monitoring's selectors) where known, else from its name's suffix, which
follows Prometheus' naming conventions (`_bytes`, `_seconds`, `_percent`).
"""

from __future__ import annotations

from collections.abc import Mapping

from alerts.models import AlertRule
from core.humanize import duration, number, quantity

SUFFIX_UNITS = (("_bytes", "bytes"), ("_seconds", "s"), ("_percent", "%"), ("_per_second", "/s"))
DAY_SECONDS = 86400


def metric_unit(metric: str, known_units: Mapping[str, str] | None = None) -> str:
    """The unit of a metric's values: its series' unit if one is stored, else the one its name implies."""
    if known_units and known_units.get(metric):
        return known_units[metric]
    return next((unit for suffix, unit in SUFFIX_UNITS if metric.endswith(suffix)), "")


def rule_quantity(*, kind: str, value: float | None, unit: str) -> str:
    """A value or threshold of a rule of this kind: forecasts count days, rates are per second."""
    if value is None:
        return "—"
    if kind == AlertRule.Kind.FORECAST:
        return duration(value * DAY_SECONDS)
    if kind == AlertRule.Kind.RATE_OF_CHANGE:
        return f"{quantity(value, unit)}/s"
    return quantity(value, unit)


def alert_value_text(*, kind: str, value: float | None, unit: str) -> str:
    """What an alert's value means: event alerts count something, the others measure their metric."""
    if kind == AlertRule.Kind.TARGET_DOWN and value is not None:
        failures = int(value)
        return f"{failures} collection{'s' if failures != 1 else ''} failed in a row"
    if kind in (AlertRule.Kind.TUNER_FAILURE, AlertRule.Kind.SCALING_FAILURE):
        return "failed" if value is None else number(value)
    if kind == AlertRule.Kind.PLAN_REGRESSION:
        return "plan changed, slower" if value is None else number(value)
    if kind == AlertRule.Kind.EXTERNAL and value is None:
        return "sent by Prometheus"
    if kind == AlertRule.Kind.FORECAST and value is not None:
        return f"limit in {duration(value * DAY_SECONDS)}"
    if value is None:
        return "no data"
    return rule_quantity(kind=kind, value=value, unit=unit)
