"""Rule evaluation: observe each rule's series (through monitoring's selectors), step its alerts'
state machines, and write state changes, history and outbox rows in one transaction per rule.

Event rules: target down is observed from monitoring's target health; tuner and scaling failures
arrive through alert_event_emit(), which other apps call when something fails.

PromQL rules read their expression through monitoring.promql.sources (Perfpilot's store or an
external server), as a Prometheus alerting rule does: every element of the result is one alert.
When the query fails, the rule records the error and its alerts stay exactly as they were (as
Prometheus leaves a rule's active alerts when its evaluation errs): a source that is down resolves
nothing, and nothing goes from pending to firing without an observation.
"""

from __future__ import annotations

import logging
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from alerts.models import EVENT_KINDS, Alert, AlertRule, AlertState, AlertStateChange
from alerts.services import state as sm
from alerts.services.matching import fingerprint
from alerts.services.outbox import notification_enqueue, notification_enqueue_repeats
from core.locks import lock_acquire, lock_key
from core.redis_client import get_redis

logger = logging.getLogger(__name__)

EVALUATION_LOCK = lock_key("evaluate-alerts")
REPEAT_CHECK_KEY = "perfpilot:alerts:repeats-checked"
REPEAT_CHECK_SECONDS = 15
FORECAST_WINDOW = timedelta(days=7)
# One alert per element: an expression answering more than this many is a mistake, not an incident
# (Prometheus's rule group `limit` does the same); the rule fails with last_error and stays as it was.
MAX_PROMQL_ALERTS = 1000
# Rules reading an external PromQL source go last, longest unevaluated first, and only while a run
# has spent less than this: a slow source (up to its timeout per query) then delays only other such
# rules, which stay due for the next run, and evaluate_rules_task stays within its 100 s soft limit.
EXTERNAL_BUDGET_SECONDS = 60


class RuleQueryFailed(Exception):
    """A rule's query could not be answered; its alerts are left alone. `unavailable`: the source did
    not answer (else the expression is at fault)."""

    def __init__(self, message: str, *, unavailable: bool = False) -> None:
        super().__init__(message)
        self.unavailable = unavailable


@dataclass(frozen=True)
class Observed:
    """What one evaluation saw for one alert identity."""

    labels: dict[str, str]
    target_id: int | None
    metric: str
    observation: sm.Observation
    message: str = ""


@dataclass
class EvaluationSummary:
    rules: int = 0
    changes: int = 0
    repeats: int = 0
    errors: dict[str, str] = field(default_factory=dict)
    skipped: bool = False
    deferred: int = 0  # rules reading an external source left for the next run (EXTERNAL_BUDGET_SECONDS)


def classify(*, rule: AlertRule, value: float | None) -> sm.Observation:
    """The severity a value breaches (critical before warning), for threshold-like rules."""
    if value is None:
        return sm.Observation(None, None)
    below = rule.kind in (AlertRule.Kind.THRESHOLD_BELOW, AlertRule.Kind.FORECAST)
    for severity, threshold in (("critical", rule.critical_threshold), ("warning", rule.warning_threshold)):
        if threshold is None:
            continue
        if (value <= threshold) if below else (value >= threshold):
            return sm.Observation(severity, value, threshold)
    return sm.Observation(None, value)


def _labels(rule: AlertRule, *, target_name: str, metric: str, series_labels: dict | None = None) -> dict[str, str]:
    labels = {str(k): str(v) for k, v in (series_labels or {}).items()}
    labels.update({str(k): str(v) for k, v in (rule.labels or {}).items()})
    labels.update({"alertname": rule.name, "target": target_name, "metric": metric})
    return labels


def _series_observations(rule: AlertRule, now: datetime) -> list[Observed]:
    from monitoring.selectors.forecasts import forecast_series
    from monitoring.selectors.series import series_latest, series_matching, series_query

    matched = series_matching(metric=rule.metric, target_id=rule.target_id, labels=rule.series_labels or None)
    window = timedelta(seconds=rule.window_seconds)
    observed = []

    def add(series, observation: sm.Observation) -> None:
        target_name = series.target.name if series.target else ""
        labels = _labels(rule, target_name=target_name, metric=series.metric, series_labels=series.labels)
        observed.append(Observed(labels, series.target_id, series.metric, observation))

    if rule.kind == AlertRule.Kind.ABSENCE:
        latest = series_latest(series_ids=[s.id for s in matched], within=window, now=now)
        for series in matched:
            if series.id not in latest:
                add(series, sm.Observation(rule.severity, None))
            else:
                add(series, sm.Observation(None, latest[series.id][1]))
        if not matched:  # nothing was ever stored: absent too
            target_name = rule.target.name if rule.target else ""
            labels = _labels(rule, target_name=target_name, metric=rule.metric, series_labels=rule.series_labels)
            observed.append(Observed(labels, rule.target_id, rule.metric, sm.Observation(rule.severity, None)))
        return observed
    if rule.kind == AlertRule.Kind.RATE_OF_CHANGE:
        if not matched:
            return observed
        result = series_query(
            series_ids=[s.id for s in matched], start=now - window, end=now, max_points=rule.window_seconds, now=now
        )
        for series in matched:
            points = result.series[series.id]
            if len(points) < 2:
                continue
            seconds = (points[-1].ts - points[0].ts).total_seconds()
            rate = (points[-1].avg - points[0].avg) / seconds if seconds > 0 else 0.0
            add(series, classify(rule=rule, value=rate))
        return observed
    if rule.kind == AlertRule.Kind.FORECAST:
        for series in matched:
            forecast = forecast_series(series_id=series.id, window=FORECAST_WINDOW, limit=rule.forecast_limit, now=now)
            if forecast is not None:
                add(series, classify(rule=rule, value=forecast.days_to_limit))
        return observed
    latest = series_latest(series_ids=[s.id for s in matched], within=window, now=now)
    for series in matched:
        if series.id in latest:
            add(series, classify(rule=rule, value=latest[series.id][1]))
    return observed


def promql_alert_labels(rule: AlertRule, element_labels: dict[str, str]) -> dict[str, str]:
    """An element's labels without its metric name, then the rule's labels, then alertname (Prometheus's order)."""
    labels = {str(k): str(v) for k, v in element_labels.items() if k != "__name__"}
    labels.update({str(k): str(v) for k, v in (rule.labels or {}).items()})
    labels["alertname"] = rule.name
    return labels


def promql_classify(*, rule: AlertRule, value: float) -> sm.Observation:
    """With thresholds, the element's value against them (at or above); without, every element
    breaches at the rule's severity, as in Prometheus where the expression itself is the condition.
    A value that is not finite is stored as none (JSON and the pages cannot show NaN or infinity)."""
    thresholds = rule.warning_threshold is not None or rule.critical_threshold is not None
    observation = classify(rule=rule, value=value) if thresholds else sm.Observation(rule.severity, value)
    if math.isfinite(value):
        return observation
    return sm.Observation(observation.severity, None, observation.threshold)


def promql_elements(rule: AlertRule, now: datetime) -> list[tuple[dict[str, str], float]]:
    """The expression's elements at `now`; RuleQueryFailed with the source's or the engine's words."""
    from monitoring.promql.sources import instant_vector

    with promql_query_failures():
        elements = instant_vector(rule.expression, time_ms=round(now.timestamp() * 1000), source=rule.promql_source)
    promql_elements_check(len(elements))
    return elements


@contextmanager
def promql_query_failures():
    """The engine's or the source's failure as RuleQueryFailed, in their words."""
    from monitoring.promql.errors import PromQLError
    from monitoring.promql.sources import SourceUnavailable

    try:
        yield
    except PromQLError as exc:
        raise RuleQueryFailed(str(exc)) from exc
    except SourceUnavailable as exc:
        raise RuleQueryFailed(str(exc), unavailable=True) from exc


def promql_elements_check(count: int) -> None:
    if count > MAX_PROMQL_ALERTS:
        raise RuleQueryFailed(
            f"the expression gives {count} elements, more than the {MAX_PROMQL_ALERTS} alerts a rule may "
            "have: aggregate it or narrow its selectors"
        )


def _promql_observations(rule: AlertRule, now: datetime) -> list[Observed]:
    from monitoring.models import Target

    elements = promql_elements(rule, now)
    target_ids = {}
    if rule.promql_source_id is None:  # Perfpilot's own series carry their target's name
        names = {labels["target"] for labels, _ in elements if labels.get("target")}
        target_ids = dict(Target.objects.filter(name__in=names).values_list("name", "id"))
    observed = []
    for element_labels, value in elements:
        labels = promql_alert_labels(rule, element_labels)
        target_id = target_ids.get(element_labels.get("target", ""))
        # No `metric`: a PromQL alert's severity moves within the one alert, so there is nothing to inhibit.
        observed.append(Observed(labels, target_id, "", promql_classify(rule=rule, value=value)))
    return observed


def _target_down_observations(rule: AlertRule) -> list[Observed]:
    from monitoring.selectors.targets import target_list

    observed = []
    for target in target_list():
        if not target.enabled or (rule.target_id is not None and target.id != rule.target_id):
            continue
        down = target.is_down
        observation = sm.Observation(rule.severity if down else None, float(target.consecutive_failures))
        labels = _labels(rule, target_name=target.name, metric="up")
        observed.append(Observed(labels, target.id, "up", observation, message=target.last_error if down else ""))
    return observed


def alert_snapshot(alert: Alert) -> sm.Snapshot:
    return sm.Snapshot(
        state=alert.state,
        severity=alert.severity,
        value=alert.value,
        threshold=alert.threshold,
        since=alert.since,
        fired_at=alert.fired_at,
        resolved_at=alert.resolved_at,
        last_breach_at=alert.last_breach_at,
    )


def alert_apply(*, alert: Alert, transition: sm.Transition, now: datetime, message: str | None = None) -> bool:
    """Store a transition: the alert, a history row when its state (or firing severity) changed,
    and outbox rows when receivers are to be told. Call inside a transaction. True if it changed."""
    after = transition.after
    alert.state = after.state
    alert.severity = after.severity or alert.severity
    alert.value = after.value
    alert.threshold = after.threshold
    alert.since = after.since
    alert.fired_at = after.fired_at
    alert.resolved_at = after.resolved_at
    alert.last_breach_at = after.last_breach_at
    alert.last_evaluated_at = now
    if message is not None:
        alert.message = message[:2000]
    if transition.changed and after.state in (AlertState.PENDING, AlertState.INACTIVE) and alert.acked_at:
        # A new episode starts unacknowledged.
        alert.acked_at, alert.acked_by, alert.ack_comment = None, None, ""
    alert.save()
    if not transition.changed:
        return False
    AlertStateChange.objects.create(
        alert=alert,
        from_state=transition.before.state,
        to_state=after.state,
        severity=alert.severity,
        value=after.value,
        threshold=after.threshold,
        note=transition.note,
        at=now,
    )
    if transition.notifies:
        notification_enqueue(alert=alert, now=now)
    return True


def rule_evaluate(*, rule: AlertRule, now: datetime | None = None) -> int:
    """Evaluate one rule now; returns the number of state changes."""
    now = now or timezone.now()
    if rule.kind == AlertRule.Kind.EXTERNAL:
        from alerts.services.external import external_rule_evaluate

        return external_rule_evaluate(rule=rule, now=now)
    if rule.kind == AlertRule.Kind.PROMQL:
        try:
            observed = _promql_observations(rule, now)
        except RuleQueryFailed as exc:
            logger.warning("PromQL rule %s: %s", rule.id, exc)
            AlertRule.objects.filter(pk=rule.pk).update(last_evaluated_at=now, last_error=str(exc)[:2000])
            return 0
    elif rule.kind == AlertRule.Kind.TARGET_DOWN:
        observed = _target_down_observations(rule)
    elif rule.is_event:
        observed = []  # tuner and scaling failures arrive through alert_event_emit
    else:
        observed = _series_observations(rule, now)
    changes = 0
    with transaction.atomic():
        existing = {
            alert.fingerprint: alert
            for alert in Alert.objects.select_for_update(of=("self",))
            .filter(rule=rule)
            .select_related("rule", "target")
        }
        seen = set()
        for item in observed:
            key = fingerprint(item.labels)
            seen.add(key)
            alert = existing.get(key)
            if alert is None:
                if item.observation.severity is None:
                    continue  # nothing to remember about a healthy series
                alert = Alert(
                    rule=rule, fingerprint=key, labels=item.labels, target_id=item.target_id, metric=item.metric
                )
            transition = sm.step(
                alert_snapshot(alert),
                item.observation,
                now=now,
                for_seconds=rule.for_seconds,
                keep_firing_for_seconds=rule.keep_firing_for_seconds,
            )
            changes += alert_apply(alert=alert, transition=transition, now=now, message=item.message)
        quiet_after = now - timedelta(seconds=rule.window_seconds)
        for key, alert in existing.items():
            if key in seen or alert.state not in (AlertState.PENDING, AlertState.FIRING):
                continue
            if rule.is_event and rule.kind != AlertRule.Kind.TARGET_DOWN and alert.last_breach_at > quiet_after:
                continue  # an event alert stays up for window_seconds after its last event
            transition = sm.step(
                alert_snapshot(alert),
                sm.Observation(None, None if not rule.is_event else alert.value),
                now=now,
                for_seconds=rule.for_seconds,
                keep_firing_for_seconds=rule.keep_firing_for_seconds,
            )
            changes += alert_apply(alert=alert, transition=transition, now=now)
        AlertRule.objects.filter(pk=rule.pk).update(last_evaluated_at=now, last_error="")
    return changes


def rules_evaluate_due(*, now: datetime | None = None, force: bool = False) -> EvaluationSummary:
    """Evaluate every enabled rule whose interval has passed (all with force), then queue repeats.

    One evaluator at a time (a Redis lock); a rule that fails is recorded on the rule and never
    stops the others.
    """
    now = now or timezone.now()
    summary = EvaluationSummary()
    lock = lock_acquire(EVALUATION_LOCK)
    if lock is None:
        summary.skipped = True
        return summary
    started = time.monotonic()
    rules = (
        AlertRule.objects.filter(enabled=True)
        .select_related("target", "promql_source")
        .order_by(F("promql_source_id").asc(nulls_first=True), F("last_evaluated_at").asc(nulls_first=True), "id")
    )
    with lock:
        for rule in rules:
            due = rule.last_evaluated_at is None or (
                now - rule.last_evaluated_at >= timedelta(seconds=rule.eval_interval_seconds) - timedelta(seconds=0.5)
            )
            if not (due or force):
                continue
            if rule.promql_source_id is not None and time.monotonic() - started > EXTERNAL_BUDGET_SECONDS:
                summary.deferred += 1
                continue
            summary.rules += 1
            try:
                summary.changes += rule_evaluate(rule=rule, now=now)
            except Exception as exc:
                logger.exception("alert rule %s failed to evaluate", rule.id)
                message = f"{type(exc).__name__}: {exc}"
                summary.errors[rule.name] = message
                AlertRule.objects.filter(pk=rule.pk).update(last_evaluated_at=now, last_error=message[:2000])
        # Repeats are checked every REPEAT_CHECK_SECONDS, not every tick: repeat intervals are a minute or more.
        if get_redis().set(REPEAT_CHECK_KEY, "1", nx=True, ex=REPEAT_CHECK_SECONDS):
            summary.repeats = notification_enqueue_repeats(now=now)
    return summary


def alert_event_emit(
    *,
    kind: str,
    target=None,
    labels: dict[str, str] | None = None,
    message: str = "",
    value: float | None = None,
    now: datetime | None = None,
) -> list[Alert]:
    """Report an event (a tuner failure, a scaling failure) to the rules that watch that kind.

    Other apps call this when something fails, e.g.
    ``alert_event_emit(kind="tuner_failure", target=target, labels={"tuner": "vacuum"}, message=str(exc))``.
    Each enabled rule of that kind (for this target, or for all targets) gets an alert keyed by
    its labels, which goes pending/firing like any other (for 0 s = at once) and resolves once no
    new event came for the rule's window_seconds. Returns the alerts touched.
    """
    if kind not in EVENT_KINDS:
        from core.errors import InvalidInput

        raise InvalidInput(f"Unknown event kind {kind!r}.", field="kind")
    now = now or timezone.now()
    touched = []
    rules = AlertRule.objects.filter(enabled=True, kind=kind)
    target_id = getattr(target, "id", None)
    with transaction.atomic():
        for rule in rules:
            if rule.target_id is not None and rule.target_id != target_id:
                continue
            alert_labels = _labels(rule, target_name=getattr(target, "name", ""), metric=kind, series_labels=labels)
            key = fingerprint(alert_labels)
            alert = Alert.objects.select_for_update().filter(fingerprint=key).first() or Alert(
                rule=rule, fingerprint=key, labels=alert_labels, target_id=target_id, metric=kind
            )
            transition = sm.step(
                alert_snapshot(alert),
                sm.Observation(rule.severity, value),
                now=now,
                for_seconds=rule.for_seconds,
                keep_firing_for_seconds=rule.keep_firing_for_seconds,
            )
            alert_apply(alert=alert, transition=transition, now=now, message=message)
            touched.append(alert)
    return touched
