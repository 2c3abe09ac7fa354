"""Reads: alert lists with filters, the firing banner, rule previews, delivery logs."""

from __future__ import annotations

import hashlib
import json
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import QuerySet
from django.utils import timezone

from alerts.models import (
    SEVERITY_RANK,
    Alert,
    AlertRule,
    AlertState,
    Channel,
    DeliveryAttempt,
    Notification,
    NotificationItem,
    Severity,
    Silence,
)
from alerts.services.matching import matches
from alerts.services.outbox import inhibited_by, inhibition_key, silence_for
from core import humanize

STATE_ORDER = {AlertState.FIRING: 0, AlertState.PENDING: 1, AlertState.RESOLVED: 2, AlertState.INACTIVE: 3}


@dataclass(frozen=True)
class AlertView:
    alert: Alert
    silence: Silence | None
    inhibited_by: Alert | None

    @property
    def silenced(self) -> bool:
        return self.silence is not None

    @property
    def muted(self) -> bool:
        return self.silence is not None or self.inhibited_by is not None


def alert_list(
    *,
    state: str | None = None,
    severity: str | None = None,
    target: str | None = None,
    silenced: bool | None = None,
    rule_id: int | None = None,
    limit: int = 200,
) -> list[AlertView]:
    """Alerts, firing first, then pending, then resolved (newest first within each); inactive ones
    (pending episodes that never fired) are left out unless asked for by state."""
    alerts = Alert.objects.select_related("rule", "target", "acked_by")
    alerts = alerts.filter(state=state) if state else alerts.exclude(state=AlertState.INACTIVE)
    if severity:
        alerts = alerts.filter(severity=severity)
    if target:
        alerts = alerts.filter(labels__target=target)
    if rule_id is not None:
        alerts = alerts.filter(rule_id=rule_id)
    now = timezone.now()
    views = []
    for alert in alerts.order_by("-updated_at")[: limit * 2]:
        active = alert.state in (AlertState.PENDING, AlertState.FIRING)
        view = AlertView(
            alert=alert,
            silence=silence_for(alert=alert, now=now) if active else None,
            inhibited_by=inhibited_by(alert=alert) if alert.state == AlertState.FIRING else None,
        )
        if silenced is not None and view.silenced != silenced:
            continue
        views.append(view)
    views.sort(key=lambda v: (STATE_ORDER[v.alert.state], -(v.alert.since or now).timestamp()))
    return views[:limit]


def alert_view(*, alert: Alert) -> AlertView:
    return AlertView(alert=alert, silence=silence_for(alert=alert), inhibited_by=inhibited_by(alert=alert))


def firing_alerts() -> QuerySet[Alert]:
    """Firing alerts, critical first."""
    return Alert.objects.filter(state=AlertState.FIRING).select_related("rule").order_by("severity", "-fired_at")


@dataclass(frozen=True)
class BannerSummary:
    """The banner on every page: firing alerts nobody has taken care of yet, and how many others fire."""

    alerts: list[Alert]  # firing, not acknowledged, silenced or inhibited; critical first
    acknowledged: int
    muted: int  # silenced or inhibited (and not acknowledged)

    @property
    def critical(self) -> int:
        return sum(1 for alert in self.alerts if alert.severity == Severity.CRITICAL)

    @property
    def version(self) -> str:
        """Changes whenever what the banner says changes (the page re-renders it only then)."""
        shown = ",".join(f"{alert.id}:{alert.severity}" for alert in self.alerts)
        return hashlib.sha256(f"{shown}|{self.acknowledged}|{self.muted}".encode()).hexdigest()[:16]


def banner_summary(*, now: datetime | None = None) -> BannerSummary:
    """Firing alerts split into those needing attention, acknowledged ones, and silenced or inhibited ones.

    One query per kind of thing (not per alert), since every open page asks for this every few seconds.
    """
    now = now or timezone.now()
    firing = list(firing_alerts())
    silences = list(Silence.objects.filter(starts_at__lte=now, ends_at__gt=now))
    critical_keys = {inhibition_key(a) for a in firing if a.severity == Severity.CRITICAL} - {None}
    attention, acknowledged, muted = [], 0, 0
    for alert in firing:
        inhibited = alert.severity == Severity.WARNING and inhibition_key(alert) in critical_keys
        if alert.acked_at is not None:
            acknowledged += 1
        elif inhibited or any(matches(silence.matchers, alert.labels) for silence in silences):
            muted += 1
        else:
            attention.append(alert)
    return BannerSummary(alerts=attention, acknowledged=acknowledged, muted=muted)


def silence_list(*, include_expired: bool = True) -> QuerySet[Silence]:
    silences = Silence.objects.select_related("created_by")
    if not include_expired:
        silences = silences.filter(ends_at__gt=timezone.now())
    return silences.order_by("-ends_at")


def rule_list() -> QuerySet[AlertRule]:
    return AlertRule.objects.select_related("target", "promql_source").order_by("name")


def channel_list() -> QuerySet[Channel]:
    return Channel.objects.order_by("name")


def delivery_log(*, channel: Channel, limit: int = 50) -> QuerySet[DeliveryAttempt]:
    return DeliveryAttempt.objects.filter(channel=channel).select_related("notification").order_by("-at", "-id")[:limit]


def alert_notifications(*, alert: Alert, limit: int = 20) -> QuerySet[NotificationItem]:
    """The messages about this alert, newest first, with their channel and how delivery went."""
    return (
        NotificationItem.objects.filter(alert=alert, notification__is_test=False)
        .select_related("notification__channel")
        .order_by("-created_at", "-id")[:limit]
    )


def channel_backlog(*, channel: Channel) -> int:
    return Notification.objects.filter(channel=channel, status__in=("pending", "sending")).count()


@dataclass(frozen=True)
class PreviewRow:
    series: str
    target: str
    value: float | None
    at: datetime | None
    severity: str | None  # what the rule would say about this value now
    quantity: str = ""  # the value as people read it, in the series' unit
    labels: dict | None = None  # a PromQL rule's alert labels (the element's and the rule's)


def rule_preview(*, data, limit: int = 20) -> list[PreviewRow]:
    """The current value of every series a (possibly unsaved) rule watches, and what it would say."""
    from alerts.formatting import alert_value_text, metric_unit
    from alerts.services.evaluation import classify
    from monitoring.selectors.series import series_latest, series_matching
    from monitoring.selectors.targets import target_list

    if data.kind == AlertRule.Kind.PROMQL:
        return promql_preview(data=data, limit=limit)
    rule = AlertRule(
        kind=data.kind, warning_threshold=data.warning_threshold, critical_threshold=data.critical_threshold
    )
    if data.kind == AlertRule.Kind.TARGET_DOWN:
        return [
            PreviewRow(
                t.name,
                t.name,
                float(t.consecutive_failures),
                t.last_attempt_at,
                data.severity if t.is_down else None,
                alert_value_text(kind=data.kind, value=float(t.consecutive_failures), unit=""),
            )
            # Sliced in the database: a deployment may have thousands of targets.
            for t in (target_list() if data.target_id is None else target_list().filter(id=data.target_id))[:limit]
        ]
    if not data.metric:
        return []
    matched = series_matching(metric=data.metric, target_id=data.target_id, labels=data.series_labels or None)[:limit]
    latest = series_latest(series_ids=[s.id for s in matched], within=timedelta(seconds=max(data.window_seconds, 60)))
    rows = []
    for series in matched:
        at, value = latest.get(series.id, (None, None))
        thresholded = rule.kind in (AlertRule.Kind.THRESHOLD_ABOVE, AlertRule.Kind.THRESHOLD_BELOW)
        if thresholded:
            severity = classify(rule=rule, value=value).severity
        elif data.kind == AlertRule.Kind.ABSENCE:
            severity = data.severity if value is None else None
        else:
            severity = None  # rates and forecasts are computed at evaluation
        # The series' latest sample, whatever the kind (rates and forecasts are computed at evaluation).
        quantity = humanize.quantity(value, series.unit or metric_unit(series.metric))
        rows.append(PreviewRow(str(series), series.target.name if series.target else "", value, at, severity, quantity))
    return rows


def _promql_preview_rule(data) -> AlertRule:
    """An unsaved rule from the input, its source found and its expression checked (400 naming the field)."""
    from core.errors import InvalidInput
    from monitoring.models import PromQLSource
    from monitoring.promql.errors import PromQLError
    from monitoring.promql.sources import expression_check

    source = None
    if data.promql_source_id is not None:
        source = PromQLSource.objects.filter(pk=data.promql_source_id).first()
        if source is None:
            raise InvalidInput(f"There is no PromQL source {data.promql_source_id}.", field="promql_source_id")
    try:  # checked here first: nothing that does not parse is sent to an external server
        expression_check(data.expression, source=source)
    except PromQLError as exc:
        raise InvalidInput(str(exc), field="expression") from exc
    rule = AlertRule(
        name=data.name or "preview",
        kind=data.kind,
        expression=data.expression,
        promql_source=source,
        warning_threshold=data.warning_threshold,
        critical_threshold=data.critical_threshold,
        severity=data.severity,
        labels=data.labels,
        for_seconds=data.for_seconds,
        keep_firing_for_seconds=data.keep_firing_for_seconds,
        eval_interval_seconds=data.eval_interval_seconds,
    )
    return rule


@contextmanager
def _promql_query_errors():
    """A query that fails is an error on the field at fault: 400 on `expression`, 502 on the source."""
    from alerts.services.evaluation import RuleQueryFailed
    from core.errors import InvalidInput, UpstreamUnavailable

    try:
        yield
    except RuleQueryFailed as exc:
        if exc.unavailable:
            raise UpstreamUnavailable(str(exc), field="promql_source_id") from exc
        raise InvalidInput(str(exc), field="expression") from exc


def rule_replay_preview(*, data, replay_range: str):
    """When a (possibly unsaved) promql rule would have been pending and firing over the last
    `replay_range`; 400 naming `kind` for other kinds, which have no expression to replay."""
    from alerts.services.whatif import rule_replay
    from core.errors import InvalidInput

    if data.kind != AlertRule.Kind.PROMQL:
        raise InvalidInput("Only promql rules can be replayed.", field="kind")
    rule = _promql_preview_rule(data)
    with _promql_query_errors():
        return rule_replay(rule=rule, replay_range=replay_range, now=timezone.now())


def promql_preview(*, data, limit: int) -> list[PreviewRow]:
    """What the expression gives now, element by element (breaching ones first), and what each would
    be. A query that fails is an error on the field at fault: 400 on `expression`, 502 on the source."""
    from alerts.services.evaluation import promql_alert_labels, promql_classify, promql_elements

    rule = _promql_preview_rule(data)
    now = timezone.now()
    with _promql_query_errors():
        elements = promql_elements(rule, now)
    rows = []
    for element_labels, value in elements:
        observation = promql_classify(rule=rule, value=value)
        shown = {k: v for k, v in element_labels.items() if k != "__name__"}
        pairs = ", ".join(f'{k}="{v}"' for k, v in sorted(shown.items()))
        series = element_labels.get("__name__", "") + "{" + pairs + "}"
        rows.append(
            PreviewRow(
                series,
                element_labels.get("target", ""),
                observation.value,
                now,
                observation.severity,
                humanize.quantity(observation.value, ""),
                promql_alert_labels(rule, element_labels),
            )
        )
    rows.sort(key=lambda row: (-SEVERITY_RANK.get(row.severity, -1), row.series))
    return rows[:limit]


ALERTMANAGER_COMPATIBLE_VERSION = "0.25.0"  # the Alertmanager API v2 this answers like


def alertmanager_status() -> dict:
    """Alertmanager's `GET /api/v2/status` answer (alertmanagerStatus): a single ready node; the
    config is Perfpilot's routing written as Alertmanager receivers, one per enabled channel."""
    from datetime import UTC
    from datetime import datetime as dt

    from core import __version__
    from core.health import PROCESS_STARTED_AT

    channels = list(Channel.objects.filter(enabled=True).order_by("name").values_list("name", "severities", "group_by"))
    lines = [
        "# Perfpilot routes alerts through its channels (Alerts > Channels); this is a summary, not a file.",
        "route:",
        "  receiver: perfpilot",
        "  routes:",
    ]
    for name, severities, group_by in channels:
        lines.append(f"    - receiver: {json.dumps(name)}")
        if severities:
            lines.append(f"      matchers: [{json.dumps('severity=~' + '|'.join(severities))}]")
        if group_by:
            lines.append(f"      group_by: {json.dumps(group_by)}")
    lines += ["receivers:", "  - name: perfpilot", *(f"  - name: {json.dumps(c[0])}" for c in channels)]
    return {
        "cluster": {"name": "perfpilot", "peers": [], "status": "ready"},
        "config": {"original": "\n".join(lines) + "\n"},
        "uptime": dt.fromtimestamp(PROCESS_STARTED_AT, tz=UTC).isoformat().replace("+00:00", "Z"),
        "versionInfo": {
            "branch": "perfpilot",
            "buildDate": "",
            "buildUser": "perfpilot",
            "goVersion": "",
            "revision": __version__,
            "version": ALERTMANAGER_COMPATIBLE_VERSION,
        },
    }
