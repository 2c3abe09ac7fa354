"""Scaling's own events as series for the perfpilot collector (monitoring.collectors.perfpilot): decisions
as a counter; replicas and each rule's metric against its target as gauges."""

from __future__ import annotations

from django.db.models import F, OuterRef, Subquery

from monitoring.collectors.base import Measurement
from monitoring.collectors.perfpilot import EventCounter, EventSeries
from scaling.models import ScaledService, ScalingDecision, ScalingRule


def _counters() -> tuple[EventCounter, ...]:
    return (
        EventCounter(
            "perfpilot_scaling_decisions_total",
            lambda: ScalingDecision.objects.all(),
            F("created_at"),
            {"service": "service__name", "result": "result"},
        ),
    )


def _scaling() -> list[Measurement]:
    """Each service's replicas (applied, desired by its last decision, bounds) and its rules' metric against
    their target, as the last decision read it."""
    # One index lookup per service ((service, -created_at)), not a scan of every decision kept.
    newest = ScalingDecision.objects.filter(service=OuterRef("pk")).order_by("-created_at", "-id").values("pk")[:1]
    services = list(ScaledService.objects.annotate(latest_id=Subquery(newest)).order_by("name"))
    latest = ScalingDecision.objects.in_bulk([s.latest_id for s in services if s.latest_id is not None])
    out: list[Measurement] = []
    for service in services:
        labels = {"service": service.name}
        decision = latest.get(service.latest_id)
        current = service.observed_replicas
        if current is None and decision is not None:
            current = (
                decision.observed_replicas if decision.observed_replicas is not None else decision.current_replicas
            )
        if current is not None:
            out.append(Measurement("perfpilot_scaling_current_replicas", float(current), labels))
        if decision is not None and decision.desired_replicas is not None:
            out.append(Measurement("perfpilot_scaling_desired_replicas", float(decision.desired_replicas), labels))
        out.append(Measurement("perfpilot_scaling_min_replicas", float(service.min_replicas), labels))
        out.append(Measurement("perfpilot_scaling_max_replicas", float(service.max_replicas), labels))
        read = (decision.inputs or {}).get("rules", {}) if decision is not None else {}
        for name, value in sorted(read.items()):
            if isinstance(value, dict) and isinstance(value.get("value"), int | float):
                out.append(Measurement("perfpilot_scaling_rule_value", float(value["value"]), {**labels, "rule": name}))
    for rule in ScalingRule.objects.filter(enabled=True).select_related("service").order_by("service__name", "name"):
        labels = {"service": rule.service.name, "rule": rule.name}
        out.append(Measurement("perfpilot_scaling_rule_target", float(rule.target_value), labels))
    return out


SCALING_EVENT_SERIES = EventSeries(counters=_counters, gauges=_scaling)
