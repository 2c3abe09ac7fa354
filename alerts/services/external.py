"""Alerts other systems evaluated, received through the Alertmanager API v2 (`POST /api/v2/alerts`).

An existing Prometheus (`alerting.alertmanagers`) sends its alerts here as it would to Alertmanager:
a JSON list of postableAlert (labels, annotations, startsAt, endsAt, generatorURL), resent every
evaluation while they fire. Each becomes a Perfpilot Alert with source "external" under one rule
per alertname (kind "external", created on first sight, its metric the alertname, then the
operator's to annotate or disable), identified by its labels. It fires while its endsAt is ahead
(an absent endsAt is now + RESOLVE_TIMEOUT, as Alertmanager's resolve_timeout) and resolves when
Prometheus sends an endsAt in the past, or, as Alertmanager does, when endsAt passes without a
resend (that rule's evaluation). Severity is the `severity` label (critical, warning, info; any
other or none: warning). From there Perfpilot's state machine, routing, grouping, silences,
inhibition, acknowledgements and outbox apply as to its own alerts.

A request is validated whole before anything is written (Alertmanager would keep the valid alerts
of a batch; a 400 here stores none), in one transaction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from alerts.models import Alert, AlertRule, AlertState, Severity
from alerts.services import state as sm
from alerts.services.evaluation import alert_apply, alert_snapshot
from alerts.services.matching import fingerprint
from core.errors import InvalidInput
from core.services import audit_record

RESOLVE_TIMEOUT = timedelta(minutes=5)  # Alertmanager's default resolve_timeout
EVAL_INTERVAL_SECONDS = 15  # how often an external rule looks for alerts whose endsAt passed
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
RFC3339 = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", flags=re.IGNORECASE)
GO_ZERO_YEAR = 1  # Go's zero time (0001-01-01T00:00:00Z) means "not set"
MAX_ALERTS = 10_000
MAX_TEXT = 10_000
SEVERITIES = {Severity.CRITICAL.value, Severity.WARNING.value, Severity.INFO.value}


@dataclass(frozen=True)
class PostedAlert:
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: datetime | None
    ends_at: datetime | None
    generator_url: str

    @property
    def alertname(self) -> str:
        return self.labels["alertname"]

    @property
    def severity(self) -> str:
        severity = self.labels.get("severity", "").lower()
        return severity if severity in SEVERITIES else Severity.WARNING


@dataclass
class ReceiveSummary:
    received: int = 0
    changes: int = 0
    ignored: int = 0  # alerts of a disabled external rule, or resolved ones never seen firing


def rfc3339_parse(value: object, *, field: str) -> datetime | None:
    """An RFC 3339 time as Go writes it (nanoseconds, Z or an offset); None for absent or Go's zero time."""
    if value is None or value == "":
        return None
    found = RFC3339.fullmatch(value) if isinstance(value, str) else None
    if not found:
        raise InvalidInput(f"{field} must be an RFC 3339 date-time such as 2026-01-02T15:04:05Z.", field=field)
    whole, fraction, offset = found.groups()
    text = f"{whole}.{(fraction or '0')[:6].ljust(6, '0')}{'+00:00' if offset.upper() == 'Z' else offset}"
    try:
        parsed = datetime.fromisoformat(text.replace("t", "T"))
    except ValueError as exc:
        raise InvalidInput(f"{field} is not a valid date-time: {exc}.", field=field) from None
    return None if parsed.year == GO_ZERO_YEAR else parsed


def _string_map(value: object, *, field: str, names: bool) -> dict[str, str]:
    if not isinstance(value, dict):
        raise InvalidInput(f"{field} must be an object of string values.", field=field)
    result = {}
    for name, text in value.items():
        if names and not LABEL_NAME.fullmatch(name):
            raise InvalidInput(f"{field}: invalid label name {name!r}.", field=field)
        if not isinstance(text, str):
            raise InvalidInput(f"{field}.{name} must be a string.", field=field)
        if len(text) > MAX_TEXT:
            raise InvalidInput(f"{field}.{name} is longer than {MAX_TEXT:,} characters.", field=field)
        result[name] = text
    return result


def alerts_parse(payload: object) -> list[PostedAlert]:
    """Check a postableAlerts body as Alertmanager does; InvalidInput names the first bad field."""
    if not isinstance(payload, list):
        raise InvalidInput("The body must be a JSON list of alerts.", field="body")
    if len(payload) > MAX_ALERTS:
        raise InvalidInput(f"At most {MAX_ALERTS:,} alerts per request.", field="body")
    parsed = []
    for index, item in enumerate(payload):
        where = f"[{index}]"
        if not isinstance(item, dict):
            raise InvalidInput(f"{where} must be an object with labels.", field=where)
        if "labels" not in item:
            raise InvalidInput(f"{where}.labels is required.", field=f"{where}.labels")
        labels = _string_map(item["labels"], field=f"{where}.labels", names=True)
        if not labels:
            raise InvalidInput(f"{where}.labels: at least one label pair required.", field=f"{where}.labels")
        if not labels.get("alertname"):
            raise InvalidInput(f"{where}.labels.alertname is required.", field=f"{where}.labels.alertname")
        if len(labels["alertname"]) > 200:
            raise InvalidInput(f"{where}.labels.alertname is longer than 200 characters.", field=f"{where}.labels")
        annotations = _string_map(item.get("annotations") or {}, field=f"{where}.annotations", names=False)
        starts_at = rfc3339_parse(item.get("startsAt"), field=f"{where}.startsAt")
        ends_at = rfc3339_parse(item.get("endsAt"), field=f"{where}.endsAt")
        if starts_at and ends_at and ends_at < starts_at:
            raise InvalidInput(f"{where}: endsAt is before startsAt.", field=f"{where}.endsAt")
        generator_url = item.get("generatorURL") or ""
        if not isinstance(generator_url, str) or len(generator_url) > MAX_TEXT:
            raise InvalidInput(f"{where}.generatorURL must be a URL string.", field=f"{where}.generatorURL")
        if generator_url and not generator_url.startswith(("http://", "https://")):
            raise InvalidInput(f"{where}.generatorURL must be an http(s) URL.", field=f"{where}.generatorURL")
        parsed.append(PostedAlert(labels, annotations, starts_at, ends_at, generator_url))
    return parsed


def external_fingerprint(labels: dict[str, str]) -> str:
    """Fingerprints of external alerts never equal those of Perfpilot's own (whose labels could be the same)."""
    return fingerprint({**labels, "\0source": Alert.Source.EXTERNAL})


def _rule_name(alertname: str) -> str:
    taken = set(AlertRule.objects.filter(name__startswith=alertname[:90]).values_list("name", flat=True))
    numbered = (f"{alertname[:80]} (external {n})" for n in range(2, 100))
    for candidate in (alertname[:100], f"{alertname[:85]} (external)", *numbered):
        if candidate not in taken:
            return candidate
    return f"external {fingerprint({'alertname': alertname})}"


def external_rule_for(*, alertname: str, actor=None) -> AlertRule:
    """The external rule of an alertname, created (and audited) the first time it is seen."""
    rule = AlertRule.objects.filter(kind=AlertRule.Kind.EXTERNAL, metric=alertname).first()
    if rule is not None:
        return rule
    try:
        with transaction.atomic():
            rule = AlertRule.objects.create(
                name=_rule_name(alertname),
                kind=AlertRule.Kind.EXTERNAL,
                metric=alertname,
                severity=Severity.WARNING,
                eval_interval_seconds=EVAL_INTERVAL_SECONDS,
                summary="",
                runbook="Evaluated by the Prometheus that sent it: see the alert's source link.",
            )
    except IntegrityError:  # another request created it (or took the name) at the same moment
        rule = AlertRule.objects.filter(kind=AlertRule.Kind.EXTERNAL, metric=alertname).first()
        if rule is None:
            raise
        return rule
    audit_record(actor=actor, via="api", action="alerts.rule.create", object_repr=rule.name, detail={"external": True})
    return rule


def _apply(alert: Alert, *, rule: AlertRule, observation: sm.Observation, now: datetime, message=None) -> bool:
    transition = sm.step(alert_snapshot(alert), observation, now=now, for_seconds=0, keep_firing_for_seconds=0)
    return alert_apply(alert=alert, transition=transition, now=now, message=message)


@transaction.atomic
def alerts_receive(*, alerts: list[PostedAlert], actor=None, now: datetime | None = None) -> ReceiveSummary:
    """Store parsed alerts (alerts_parse) and step each one's state; outbox rows as for Perfpilot's own."""
    now = now or timezone.now()
    summary = ReceiveSummary(received=len(alerts))
    rules: dict[str, AlertRule] = {}
    keys = [external_fingerprint(posted.labels) for posted in alerts]
    # One query for the alerts already known, locked in id order (two requests never deadlock).
    known = {
        alert.fingerprint: alert
        for alert in Alert.objects.select_for_update(of=("self",))
        .select_related("rule")
        .filter(fingerprint__in=set(keys))
        .order_by("id")
    }
    resent: dict[datetime, set[int]] = {}  # endsAt -> ids of firing alerts sent again
    for posted, key in zip(alerts, keys, strict=True):
        rule = rules.get(posted.alertname) or external_rule_for(alertname=posted.alertname, actor=actor)
        rules[posted.alertname] = rule
        ends_at = posted.ends_at or now + RESOLVE_TIMEOUT
        firing = ends_at > now
        alert = known.get(key)
        if not rule.enabled or (alert is None and not firing):
            summary.ignored += 1  # nothing to remember about an alert that never fired here
            continue
        if alert is None:
            alert = Alert(rule=rule, fingerprint=key, labels=posted.labels, source=Alert.Source.EXTERNAL, metric="")
        message = posted.annotations.get("description", "")
        carried = {
            "annotations": posted.annotations,
            "generator_url": posted.generator_url,
            "starts_at": posted.starts_at or alert.starts_at or now,
            "message": message[:2000],
        }
        if firing and alert.state == AlertState.FIRING:
            # A resend of a firing alert (every evaluation): the state machine would change nothing.
            # What it carries is written only if it changed; endsAt and the times once per endsAt below.
            changed = [name for name, value in carried.items() if getattr(alert, name) != value]
            if changed:
                Alert.objects.filter(pk=alert.pk).update(**{name: carried[name] for name in changed})
            resent.setdefault(ends_at, set()).add(alert.pk)
            continue
        for ids in resent.values():
            ids.discard(alert.pk)  # stepped below: the resend's update must not undo it
        for name, value in carried.items():
            setattr(alert, name, value)
        alert.ends_at = ends_at
        observation = sm.Observation(posted.severity if firing else None, None)
        summary.changes += _apply(alert, rule=rule, observation=observation, now=now, message=message)
        known[key] = alert
    for ends_at, ids in resent.items():
        Alert.objects.filter(pk__in=ids).update(
            ends_at=ends_at, last_breach_at=now, last_evaluated_at=now, updated_at=now
        )
    return summary


def external_rule_evaluate(*, rule: AlertRule, now: datetime) -> int:
    """Resolve the rule's alerts whose endsAt passed without a resend (Alertmanager's timeout)."""
    changes = 0
    with transaction.atomic():
        expired = (
            Alert.objects.select_for_update(of=("self",))
            .select_related("rule")
            .filter(rule=rule, state__in=(AlertState.PENDING, AlertState.FIRING), ends_at__lte=now)
        )
        for alert in expired:
            changes += _apply(alert, rule=rule, observation=sm.Observation(None, None), now=now)
        AlertRule.objects.filter(pk=rule.pk).update(last_evaluated_at=now, last_error="")
    return changes
