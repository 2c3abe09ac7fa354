"""Template tags of the alerts pages: values and thresholds in their metric's unit, and "just now".

`units` is monitoring's {metric: unit} (the view passes it); without it the unit comes from the
metric's name.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from django import template

from alerts.formatting import alert_value_text, metric_unit, rule_quantity
from alerts.forms import pairs_text
from alerts.models import Alert, AlertRule
from core import humanize

register = template.Library()


@register.filter
def ago(moment: datetime | None) -> str:
    """ "just now", "45 s ago", "3 min ago" (Django's timesince says "0 minutes")."""
    return humanize.ago(moment)


@register.simple_tag
def rule_value(rule: AlertRule, value: float | None, units: Mapping[str, str] | None = None) -> str:
    """A threshold (or any value) of a rule in its metric's unit: "2 GiB", "85 %", "7 d" for forecasts."""
    return rule_quantity(kind=rule.kind, value=value, unit=metric_unit(rule.metric, units))


@register.simple_tag
def forecast_limit(rule: AlertRule, units: Mapping[str, str] | None = None) -> str:
    """A forecast rule's limit, in its metric's unit (its thresholds are days, its limit is not)."""
    if rule.forecast_limit is None:
        return "—"
    return humanize.quantity(rule.forecast_limit, metric_unit(rule.metric, units))


@register.filter
def pairs(labels: Mapping[str, str] | None) -> str:
    """A label set as it is typed in the rule form: "team=db, service=api"."""
    return pairs_text(dict(labels or {}))


@register.simple_tag
def alert_value(alert: Alert, value: float | None, units: Mapping[str, str] | None = None) -> str:
    """What an alert's value means: "2 GiB", "7 collections failed in a row", "no data"."""
    return alert_value_text(kind=alert.rule.kind, value=value, unit=metric_unit(alert.rule.metric, units))


@register.filter
def duration(seconds: float | None) -> str:
    """Seconds in whole units: 300 → "5 min"; 0 → "0 s"."""
    return "—" if seconds is None else humanize.duration(seconds)
