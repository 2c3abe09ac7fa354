"""The control plane's own events as series: optimizer runs, recommendations, speed-ups, scaling and alerts.

The built-in target "perfpilot" (kind perfpilot) reads them from Perfpilot's own database at every
interval, through what each app registers as its "event_series" (alerts, optimizer and scaling each
have an event_series module: monitoring reads no other app), so they are stored, retained and queried
(PromQL, Grafana, alert rules) like any other series, and /metrics exposes them too.

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connection
from django.db.models import Count, QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from core.registry import registry
from monitoring.collectors.base import CUMULATIVE, Collector, CollectResult, Measurement, register

COUNT_LAG = timedelta(seconds=30)


@dataclass(frozen=True)
class EventCounter:
    """A counter: the rows of `rows()` by their time `at`, grouped by label (label name: field)."""

    metric: str
    rows: Callable[[], QuerySet]
    at: object  # field name or expression of the row's time
    labels: dict[str, str]


@dataclass(frozen=True)
class EventSeries:
    """What one app reports about itself (registry category "event_series", registered in its
    AppConfig.ready()): its event counters, and its gauges of the current state."""

    counters: Callable[[], Sequence[EventCounter]]
    gauges: Callable[[], list[Measurement]]


def _counts(counted: EventCounter, *, since: datetime | None, until: datetime) -> dict[str, int]:
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
        reporters = list(registry.all("event_series").values())
        result.measurements = self._counters(reporters, until=timezone.now() - COUNT_LAG)
        for reporter in reporters:
            result.measurements.extend(reporter.gauges())
        return result

    def test_connection(self) -> str:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return f"Perfpilot's own database answers; events of {', '.join(registry.all('event_series'))}"

    def _counters(self, reporters: list[EventSeries], *, until: datetime) -> list[Measurement]:
        since = parse_datetime(self.state["counted_until"]) if self.state.get("counted_until") else None
        totals: dict[str, dict[str, int]] = {k: dict(v) for k, v in self.state.get("totals", {}).items()}
        if since is not None and until <= since:
            until = since  # the clock went back: count nothing rather than twice
        measurements = []
        for counted in (counter for reporter in reporters for counter in reporter.counters()):
            metric_totals = totals.setdefault(counted.metric, {})
            for key, n in _counts(counted, since=since, until=until).items():
                metric_totals[key] = metric_totals.get(key, 0) + n
            for key, total in sorted(metric_totals.items()):
                measurements.append(Measurement(counted.metric, float(total), json.loads(key), CUMULATIVE))
        # Written back only with a successful collection: a failed one counts the same rows next time.
        self.state["counted_until"] = until.isoformat()
        self.state["totals"] = totals
        return measurements
