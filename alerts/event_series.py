"""Alerts' own events as series for the perfpilot collector (monitoring.collectors.perfpilot): alerts
that started firing and notification deliveries as counters, alerts firing now as a gauge."""

from __future__ import annotations

from django.db.models import Count, F, Q

from alerts.models import Alert, AlertRule, AlertState, AlertStateChange, DeliveryAttempt, Severity
from monitoring.collectors.base import Measurement
from monitoring.collectors.perfpilot import EventCounter, EventSeries


def _counters() -> tuple[EventCounter, ...]:
    return (
        EventCounter(
            "perfpilot_alert_firings_total",
            lambda: AlertStateChange.objects.filter(to_state=AlertState.FIRING),
            F("at"),
            {"rule": "alert__rule__name", "severity": "severity"},
        ),
        EventCounter(
            "perfpilot_notification_deliveries_total",
            lambda: DeliveryAttempt.objects.all(),
            F("at"),
            {"channel": "channel__name", "outcome": "outcome"},
        ),
    )


def _alerts_firing() -> list[Measurement]:
    """Alerts firing per rule and severity; every rule with every severity, zeros included."""
    firing = {
        (row["rule__name"], row["severity"]): row["n"]
        for row in Alert.objects.filter(state=AlertState.FIRING)
        .values("rule__name", "severity")
        .annotate(n=Count("pk"))
        .order_by()
    }
    rules = sorted(
        set(
            AlertRule.objects.filter(Q(enabled=True) | Q(alerts__state=AlertState.FIRING)).values_list(
                "name", flat=True
            )
        )
    )
    return [
        Measurement(
            "perfpilot_alerts_firing", float(firing.get((rule, severity), 0)), {"rule": rule, "severity": severity}
        )
        for rule in rules
        for severity in Severity.values
    ]


ALERTS_EVENT_SERIES = EventSeries(counters=_counters, gauges=_alerts_firing)
