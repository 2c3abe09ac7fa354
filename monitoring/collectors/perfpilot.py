"""The control plane's own events as series: optimizer runs, recommendations, speed-ups, scaling and alerts.

The built-in target "perfpilot" (kind perfpilot) reads them from Perfpilot's own database at every
interval, so they are stored, retained and queried (PromQL, Grafana, alert rules) like any other
series, and /metrics exposes them too.

Events are counted as Prometheus counters (stored as sent, so rate() and increase() work): each
collection adds the rows whose time falls in [last end, now - COUNT_LAG) to running totals kept in
the collector's state. A row is counted once whatever happens to it later (decisions are pruned
after their retention), and the lag gives a writer that stamped a row just before our read the
time to commit it. The rest are gauges of the current state.

Metrics (labels in braces):
    perfpilot_optimizer_runs_total{tuner, action, target, status}   runs ended (finished_at)
    perfpilot_scaling_decisions_total{service, result}
    perfpilot_alert_firings_total{rule, severity}                   alerts that started firing
    perfpilot_notification_deliveries_total{channel, outcome}       delivery attempts (sent, failed, ...)
    perfpilot_recommendations{target, category, status}             recommendations now in each status
    perfpilot_alerts_firing{rule, severity}                         alerts firing now
    perfpilot_scaling_current_replicas{service}, perfpilot_scaling_desired_replicas{service},
    perfpilot_scaling_min_replicas{service}, perfpilot_scaling_max_replicas{service}
    perfpilot_scaling_rule_value{service, rule}                     the rule's metric, as last evaluated
    perfpilot_scaling_rule_target{service, rule}                    the value the rule aims for
    perfpilot_optimizer_speedup_ratio{target, category, recommendation, title}   observed after an apply
    perfpilot_optimizer_query_mean_seconds{target, category, recommendation, title, phase=before|after}
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count, F, OuterRef, Q, QuerySet, Subquery
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from monitoring.collectors.base import CUMULATIVE, Collector, CollectResult, Measurement, register

COUNT_LAG = timedelta(seconds=30)
SPEEDUPS_SHOWN = 50  # the most recent observed speed-ups, so the series stay few


@dataclass(frozen=True)
class _Counted:
    """A counter: the rows of `rows()` by their time `at`, grouped by label (label name: field)."""

    metric: str
    rows: object  # () -> QuerySet; a callable because the models live in apps loaded after monitoring
    at: object  # field name or expression of the row's time
    labels: dict[str, str]


def _counted() -> tuple[_Counted, ...]:
    # The other apps' models are imported here: monitoring's collectors load before those apps.
    from alerts.models import AlertState, AlertStateChange, DeliveryAttempt
    from optimizer.models import OptimizationRun
    from scaling.models import ScalingDecision

    ended = [s for s in OptimizationRun.Status.values if s not in OptimizationRun.LIVE_STATUSES]
    return (
        _Counted(
            "perfpilot_optimizer_runs_total",
            lambda: OptimizationRun.objects.filter(status__in=ended),
            F("finished_at"),  # every way a run ends sets it
            {"tuner": "tuner", "action": "action", "target": "target_name", "status": "status"},
        ),
        _Counted(
            "perfpilot_scaling_decisions_total",
            lambda: ScalingDecision.objects.all(),
            F("created_at"),
            {"service": "service__name", "result": "result"},
        ),
        _Counted(
            "perfpilot_alert_firings_total",
            lambda: AlertStateChange.objects.filter(to_state=AlertState.FIRING),
            F("at"),
            {"rule": "alert__rule__name", "severity": "severity"},
        ),
        _Counted(
            "perfpilot_notification_deliveries_total",
            lambda: DeliveryAttempt.objects.all(),
            F("at"),
            {"channel": "channel__name", "outcome": "outcome"},
        ),
    )


def _counts(counted: _Counted, *, since: datetime | None, until: datetime) -> dict[str, int]:
    """Rows with since <= at < until, by their labels (as a JSON key, so the totals fit the state)."""
    rows: QuerySet = counted.rows().annotate(counted_at=counted.at).filter(counted_at__lt=until)
    if since is not None:
        rows = rows.filter(counted_at__gte=since)
    grouped = rows.values(*counted.labels.values()).annotate(n=Count("pk")).order_by()
    found: dict[str, int] = {}
    for row in grouped:
        labels = {name: str(row[field] or "") for name, field in counted.labels.items()}
        key = json.dumps(labels, sort_keys=True)
        found[key] = found.get(key, 0) + row["n"]
    return found


@register
class PerfpilotCollector(Collector):
    kind = "perfpilot"
    label = "Perfpilot (this control plane)"

    def collect(self) -> CollectResult:
        result = CollectResult()
        result.measurements = [
            *self._counters(until=timezone.now() - COUNT_LAG),
            *_recommendations(),
            *_alerts_firing(),
            *_scaling(),
            *_speedups(),
        ]
        return result

    def test_connection(self) -> str:
        from optimizer.models import OptimizationRun

        return f"Perfpilot's own database: {OptimizationRun.objects.count()} optimization runs logged"

    def _counters(self, *, until: datetime) -> list[Measurement]:
        since = parse_datetime(self.state["counted_until"]) if self.state.get("counted_until") else None
        totals: dict[str, dict[str, int]] = {k: dict(v) for k, v in self.state.get("totals", {}).items()}
        if since is not None and until <= since:
            until = since  # the clock went back: count nothing rather than twice
        measurements = []
        for counted in _counted():
            metric_totals = totals.setdefault(counted.metric, {})
            for key, n in _counts(counted, since=since, until=until).items():
                metric_totals[key] = metric_totals.get(key, 0) + n
            for key, total in sorted(metric_totals.items()):
                measurements.append(Measurement(counted.metric, float(total), json.loads(key), CUMULATIVE))
        # Written back only with a successful collection: a failed one counts the same rows next time.
        self.state["counted_until"] = until.isoformat()
        self.state["totals"] = totals
        return measurements


def _recommendations() -> list[Measurement]:
    """Every status of each (target, category) with advice, zeros included, so a count that drops to 0
    reads 0 rather than its last value for the lookback."""
    from optimizer.models import Recommendation

    counts = {
        (row["target__name"], row["category"], row["status"]): row["n"]
        for row in Recommendation.objects.values("target__name", "category", "status")
        .annotate(n=Count("pk"))
        .order_by()
    }
    pairs = sorted({(target, category) for target, category, _ in counts})
    return [
        Measurement(
            "perfpilot_recommendations",
            float(counts.get((target, category, status), 0)),
            {"target": target, "category": category, "status": status},
        )
        for target, category in pairs
        for status in Recommendation.Status.values
    ]


def _alerts_firing() -> list[Measurement]:
    """Alerts firing per rule and severity; every rule with every severity, zeros included."""
    from alerts.models import Alert, AlertRule, AlertState, Severity

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


def _scaling() -> list[Measurement]:
    """Each service's replicas (applied, desired by its last decision, bounds) and its rules' metric against
    their target, as the last decision read it."""
    from scaling.models import ScaledService, ScalingDecision, ScalingRule

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


def _speedups() -> list[Measurement]:
    from optimizer.speedup_selectors import speedups_observed

    out: list[Measurement] = []
    for target_name, speedup in speedups_observed(limit=SPEEDUPS_SHOWN):
        labels = {
            "target": target_name,
            "category": speedup.category,
            "recommendation": str(speedup.recommendation_id or ""),
            "title": speedup.title[:120],
        }
        out.append(Measurement("perfpilot_optimizer_speedup_ratio", float(speedup.speedup), labels))
        for phase, mean_ms in (("before", speedup.mean_before_ms), ("after", speedup.mean_after_ms)):
            if mean_ms is not None:
                out.append(
                    Measurement(
                        "perfpilot_optimizer_query_mean_seconds", mean_ms / 1000, {**labels, "phase": phase}, unit="s"
                    )
                )
    return out
