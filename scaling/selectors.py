"""Reads for scaling: rule metrics (through monitoring's selectors), decision history, status."""

from __future__ import annotations

import math
import statistics
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import connection
from django.db.models import OuterRef, QuerySet, Subquery
from django.utils import timezone

from core.errors import InvalidInput
from monitoring.catalogue import metric_info
from monitoring.models import PromQLSource
from monitoring.promql.errors import PromQLError
from monitoring.promql.sources import SourceUnavailable, instant_vector, range_matrix
from monitoring.selectors.series import series_get, series_latest, series_query, series_search, series_units
from scaling.models import ScaledService, ScalingDecision, ScalingRule

# A rule's newest sample older than this is missing data (it cannot cause a scale-down).
METRIC_MAX_AGE = timedelta(minutes=2)


@dataclass(frozen=True)
class Builtin:
    label: str
    metric: str
    labels: dict
    aggregate: str  # how several matching series become one value: sum, avg or max
    unit: str


BUILTINS: dict[str, Builtin] = {
    ScalingRule.Source.CPU: Builtin("CPU %", "host_cpu_percent", {"cpu": "total"}, "avg", "%"),
    ScalingRule.Source.MEMORY: Builtin("Memory %", "host_memory_used_percent", {}, "avg", "%"),
    ScalingRule.Source.REQUEST_RATE: Builtin(
        "Request rate", "prom_perfpilot_http_requests_per_second", {}, "sum", "/s"
    ),
    ScalingRule.Source.QUEUE_LENGTH: Builtin("Queue length", "celery_queue_length", {}, "sum", ""),
    ScalingRule.Source.P95_LATENCY: Builtin(
        "p95 latency", "prom_perfpilot_http_request_duration_seconds", {"quantile": "0.95"}, "max", "s"
    ),
}


def _aggregate(kind: str, values: list[float]) -> float:
    if kind == "sum":
        return float(sum(values))
    if kind == "max":
        return float(max(values))
    return float(statistics.fmean(values))


def rule_metric(rule: ScalingRule) -> tuple[str, dict, str, str]:
    """(metric name, label filter, aggregate, unit) a built-in rule reads."""
    builtin = BUILTINS[rule.source]
    return (
        rule.metric_name or builtin.metric,
        {**builtin.labels, **(rule.labels or {})},
        builtin.aggregate,
        builtin.unit,
    )


# The rule form's series picker lists at most this many series (ordered by target and metric); a rule's
# own series is always added so editing never loses it.
SERIES_CHOICES_LIMIT = 2000


@dataclass(frozen=True)
class RulePickerChoices:
    series: list[tuple[int, str]]
    metric_names: list[str]
    promql_sources: list[str]


def rule_picker_choices(*, keep_series_ids: Iterable[int] = ()) -> RulePickerChoices:
    """What the rule form offers: series by target and readable metric, metric names. Targets are not
    listed: the form's target is a name search (monitoring.forms.TargetPickerField)."""
    found = list(series_search(limit=SERIES_CHOICES_LIMIT))
    listed = {s.id for s in found}
    for series_id in keep_series_ids:
        kept = series_get(series_id=series_id) if series_id not in listed else None
        if kept is not None:
            found.append(kept)
    series = [(s.id, f"{s.target.name if s.target else 'no target'} · {s}") for s in found]
    metric_names = sorted({s.metric for s in found})
    promql_sources = list(PromQLSource.objects.order_by("name").values_list("name", flat=True))
    return RulePickerChoices(series=series, metric_names=metric_names, promql_sources=promql_sources)


def _series_matching(*, target_id: int | None, metric: str, labels: dict) -> list:
    found = series_search(target_id=target_id, text=metric, limit=1000)
    return [s for s in found if s.metric == metric and all(str(s.labels.get(k)) == str(v) for k, v in labels.items())]


@dataclass(frozen=True)
class RuleSeries:
    series_ids: tuple[int, ...]
    aggregate: str
    unit: str
    description: str


def rules_series(rules: Iterable[ScalingRule]) -> dict[int, RuleSeries]:
    """The series each rule reads; built-ins sharing (target, metric, labels) are looked up once."""
    result: dict[int, RuleSeries] = {}
    cache: dict[tuple, list] = {}
    rules = list(rules)
    # One query for the units of every rule that names a series (a tick evaluates thousands of rules).
    stored = series_units(
        series_ids=[r.series_id for r in rules if r.source == ScalingRule.Source.SERIES and r.series_id]
    )
    for rule in rules:
        if rule.source == ScalingRule.Source.PROMQL:
            result[rule.id] = RuleSeries((), "", "", f"{rule.expression} on {promql_source_label(rule)}")
            continue
        if rule.source == ScalingRule.Source.SERIES:
            ids = (rule.series_id,) if rule.series_id else ()
            metric_and_unit = stored.get(rule.series_id)
            # The catalogue's unit for a built-in metric, else the one the series was stored with.
            unit = metric_info(*metric_and_unit).unit if metric_and_unit else ""
            result[rule.id] = RuleSeries(ids, "avg", unit, f"series #{rule.series_id}")
            continue
        metric, labels, aggregate, unit = rule_metric(rule)
        key = (rule.target_id, metric, tuple(sorted(labels.items())))
        if key not in cache:
            cache[key] = _series_matching(target_id=rule.target_id, metric=metric, labels=labels)
        label_text = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        result[rule.id] = RuleSeries(
            tuple(s.id for s in cache[key]),
            aggregate,
            unit,
            f"{aggregate} of {metric}{{{label_text}}}" if label_text else f"{aggregate} of {metric}",
        )
    return result


@dataclass(frozen=True)
class RuleValue:
    value: float | None
    at: datetime | None
    series: RuleSeries
    error: str = ""  # a PromQL rule that could not give one number: why (its value is then None)


def promql_source_label(rule: ScalingRule) -> str:
    return f"source {rule.promql_source.name}" if rule.promql_source_id else "Perfpilot's store"


def _ms(at: datetime) -> int:
    return round(at.timestamp() * 1000)


def _one_value(elements: list[tuple[dict, float]]) -> tuple[float | None, str]:
    """KEDA's rule for a Prometheus scaler's answer: exactly one element, a finite number; else why not."""
    if len(elements) != 1:
        shown = ", ".join(
            "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}" for labels, _ in elements[:3]
        )
        more = f" and {len(elements) - 3} more" if len(elements) > 3 else ""
        got = f"{len(elements)} elements ({shown}{more})" if elements else "no value (an empty vector)"
        return None, f"the expression gave {got}; a scaling rule needs exactly one: aggregate it, e.g. sum(...)"
    value = elements[0][1]
    if not math.isfinite(value):
        return None, f"the expression gave {value}, not a finite number"
    return value, ""


def promql_rule_value(rule: ScalingRule, now: datetime) -> tuple[float | None, str]:
    """A PromQL rule's value at `now`, or None and the reason (its author's error, or not exactly one number):
    the same as missing data for the evaluator, with its reason. A source that cannot answer raises
    SourceUnavailable, so that the caller asks it no more in the same read."""
    try:
        elements = instant_vector(rule.expression, time_ms=_ms(now), source=rule.promql_source)
    except PromQLError as exc:
        return None, f"PromQL error: {exc}"
    return _one_value(elements)


# A tick reads the rules of every service at once, within its task's 120 s soft limit, and a source may take
# up to 60 s to time out: external sources get this long in all per read, and one that could not answer is
# not asked again in it. Rules come in the tick's order, so critical services' rules are read first.
EXTERNAL_PROMQL_BUDGET_SECONDS = 60.0


def _promql_values(
    rules: Iterable[ScalingRule], now: datetime
) -> dict[tuple[str, int | None], tuple[float | None, str]]:
    """Each PromQL rule's (value, error) at `now`, evaluated once per (expression, source)."""
    evaluated: dict[tuple[str, int | None], tuple[float | None, str]] = {}
    down: dict[int, str] = {}  # source id -> why it could not answer
    external_seconds = 0.0
    for rule in rules:
        key = (rule.expression, rule.promql_source_id)
        if rule.source != ScalingRule.Source.PROMQL or key in evaluated:
            continue
        if rule.promql_source_id in down:
            evaluated[key] = None, down[rule.promql_source_id]
            continue
        if rule.promql_source_id is not None and external_seconds > EXTERNAL_PROMQL_BUDGET_SECONDS:
            budget = f"{EXTERNAL_PROMQL_BUDGET_SECONDS:g}"
            evaluated[key] = None, f"not evaluated: external PromQL sources took over {budget} s of this read"
            continue
        started = time.monotonic()
        try:
            evaluated[key] = promql_rule_value(rule, now)
        except SourceUnavailable as exc:
            evaluated[key] = None, f"PromQL source unavailable: {exc}"
            if rule.promql_source_id is not None:
                down[rule.promql_source_id] = f"{evaluated[key][1]} (not asked again in this read)"
        if rule.promql_source_id is not None:
            external_seconds += time.monotonic() - started
    return evaluated


def rule_values(*, rules: list[ScalingRule], now: datetime | None = None) -> dict[int, RuleValue]:
    """The current value of each rule from the newest samples, in one read of all their series; PromQL rules
    are evaluated at `now`, once per (expression, source) however many rules share it (_promql_values)."""
    now = now or timezone.now()
    series = rules_series(rules)
    all_ids = sorted({sid for rs in series.values() for sid in rs.series_ids})
    latest = series_latest(series_ids=all_ids, within=METRIC_MAX_AGE, now=now) if all_ids else {}
    values: dict[int, RuleValue] = {}
    evaluated = _promql_values(rules, now)
    for rule in rules:
        rs = series[rule.id]
        if rule.source == ScalingRule.Source.PROMQL:
            value, error = evaluated[(rule.expression, rule.promql_source_id)]
            values[rule.id] = RuleValue(value, now if value is not None else None, rs, error)
            continue
        points = [latest[sid] for sid in rs.series_ids if sid in latest]
        if not points:
            values[rule.id] = RuleValue(None, None, rs)
            continue
        values[rule.id] = RuleValue(_aggregate(rs.aggregate, [v for _, v in points]), max(t for t, _ in points), rs)
    return values


@dataclass(frozen=True)
class HistoryRow:
    at: datetime
    current: int | None
    recommended: int | None
    desired: int | None
    executed: bool


def decision_history(*, service_ids: list[int], since: datetime) -> dict[int, list[HistoryRow]]:
    """Decisions since `since` per service, oldest first: the evaluator's recommendations and events."""
    rows: dict[int, list[HistoryRow]] = defaultdict(list)
    if not service_ids:
        return rows
    # Raw rows: a tick reads ~20 decisions per service (the 300 s window at 15 s), so model
    # instances would cost more than the evaluation itself.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT service_id, extract(epoch FROM created_at)::float8, current_replicas, recommended_replicas, "
            "desired_replicas, executed FROM scaling_scalingdecision "
            "WHERE service_id = ANY(%s) AND created_at > %s ORDER BY created_at, id",
            [list(service_ids), since],
        )
        # Epoch seconds: a float loads several times faster than a timestamptz, over ~20 rows per service.
        for service_id, epoch, current, recommended, desired, executed in cursor.fetchall():
            at = datetime.fromtimestamp(epoch, UTC)
            rows[service_id].append(HistoryRow(at, current, recommended, desired, executed))
    return rows


def service_list() -> QuerySet[ScaledService]:
    """Services with their last decision's id, for the Scaling page and the status endpoint."""
    last = ScalingDecision.objects.filter(service=OuterRef("pk")).order_by("-created_at", "-id").values("id")[:1]
    return ScaledService.objects.annotate(last_decision_id=Subquery(last)).prefetch_related("rules")


def services_with_last_decision() -> list[tuple[ScaledService, ScalingDecision | None]]:
    services = list(service_list())
    decisions = ScalingDecision.objects.in_bulk([s.last_decision_id for s in services if s.last_decision_id])
    return [(s, decisions.get(s.last_decision_id)) for s in services]


def decision_list(*, service: ScaledService | None = None, limit: int = 50, failed_only: bool = False):
    queryset = ScalingDecision.objects.select_related("service")
    if service is not None:
        queryset = queryset.filter(service=service)
    if failed_only:
        queryset = queryset.filter(result=ScalingDecision.Result.FAILED)
    return queryset.order_by("-created_at", "-id")[:limit]


@dataclass(frozen=True)
class MetricPoint:
    ts: datetime
    value: float


class RuleHistoryUnavailable(InvalidInput):
    """A PromQL rule's source could not answer for its history: 502, as a gateway would."""

    status_code = 502


# A PromQL rule's history is evaluated at no finer step than this (beat evaluates every 15 s).
PROMQL_MIN_STEP = timedelta(seconds=15)


def _promql_history(rule: ScalingRule, start: datetime, end: datetime, max_points: int) -> list[MetricPoint]:
    """A PromQL rule's values over [start, end) from range_matrix: a step with no value is skipped (as missing
    history), a step with several is the rule's error, as it would be at evaluation."""
    step = max(PROMQL_MIN_STEP, timedelta(seconds=math.ceil((end - start).total_seconds() / max(max_points, 1))))
    step_ms = round(step.total_seconds()) * 1000
    try:
        matrix = range_matrix(
            rule.expression, start_ms=_ms(start), end_ms=_ms(end) - 1, step_ms=step_ms, source=rule.promql_source
        )
    except PromQLError as exc:
        raise InvalidInput(f"PromQL error: {exc}", field="expression") from exc
    except SourceUnavailable as exc:
        raise RuleHistoryUnavailable(f"PromQL source unavailable: {exc}", field="promql_source") from exc
    by_step: dict[int, list[tuple[dict, float]]] = defaultdict(list)
    for labels, points in matrix:
        for t, value in points:
            by_step[t].append((labels, value))
    history = []
    for t in sorted(by_step):
        if len(by_step[t]) > 1:
            _, why = _one_value(by_step[t])
            at = datetime.fromtimestamp(t / 1000, UTC).isoformat(timespec="seconds")
            raise InvalidInput(f"At {at}, {why}.", field="expression")
        value = by_step[t][0][1]
        if math.isfinite(value):
            history.append(MetricPoint(datetime.fromtimestamp(t / 1000, UTC), value))
    return history


def rule_history(*, rule: ScalingRule, start: datetime, end: datetime, max_points: int = 1500) -> list[MetricPoint]:
    """The rule's metric over [start, end), one value per step (aggregated across its series)."""
    if rule.source == ScalingRule.Source.PROMQL:
        return _promql_history(rule, start, end, max_points)
    rs = rules_series([rule])[rule.id]
    if not rs.series_ids:
        return []
    result = series_query(series_ids=list(rs.series_ids), start=start, end=end, max_points=max_points)
    by_step: dict[datetime, list[float]] = defaultdict(list)
    for points in result.series.values():
        for point in points:
            by_step[point.ts].append(point.avg)
    return [MetricPoint(ts, _aggregate(rs.aggregate, by_step[ts])) for ts in sorted(by_step)]


def decision_why(decision: ScalingDecision | None) -> str:
    """The one line that says why: the error, or the decisive step of the explanation."""
    if decision is None:
        return "Not evaluated yet."
    if decision.error:
        return decision.error
    steps = [s for s in decision.explanation if not s.startswith(("Executed:", "Not executed"))]
    limiting = [s for s in steps if s.startswith(("Policy: scaling", "Stabilization: scaling", "Clamp:"))]
    reason = limiting[-1] if limiting else next((s for s in steps if s.startswith("Highest proposal")), "")
    final = steps[-1] if steps else ""
    return f"{final} {reason}".strip() if reason and reason != final else final


def service_status_rows() -> list[dict]:
    rows = []
    for service, decision in services_with_last_decision():
        rows.append(
            {
                "service": service.name,
                "tier": service.tier,
                "executor_kind": service.executor_kind,
                "enabled": service.enabled,
                "paused": service.paused,
                "dry_run": service.dry_run,
                "current_replicas": service.applied_replicas
                if service.applied_replicas is not None
                else service.observed_replicas,
                "observed_replicas": service.observed_replicas,
                "desired_replicas": decision.desired_replicas if decision else None,
                "min_replicas": service.min_replicas,
                "max_replicas": service.max_replicas,
                "last_decision_at": decision.created_at if decision else None,
                "last_result": decision.result if decision else None,
                "why": decision_why(decision),
                "last_error": service.last_error,
            }
        )
    return rows


def driving_rule(service: ScaledService, decision: ScalingDecision | None) -> ScalingRule | None:
    """The rule whose proposal won the last decision, else the first enabled rule."""
    rules = [r for r in service.rules.all() if r.enabled] or list(service.rules.all())
    if not rules:
        return None
    if decision is not None and decision.proposals:
        with_desired = [p for p in decision.proposals if p.get("desired") is not None]
        if with_desired:
            best = max(with_desired, key=lambda p: p["desired"])["rule"]
            for rule in rules:
                if rule.name == best:
                    return rule
    return rules[0]


def decisions_between(*, service: ScaledService, start: datetime, end: datetime, limit: int = 2000):
    """Decisions of [start, end), oldest first, for the replicas chart."""
    newest = (
        ScalingDecision.objects.filter(service=service, created_at__gte=start, created_at__lt=end)
        .order_by("-created_at")
        .only("created_at", "desired_replicas", "current_replicas", "executed", "dry_run", "result")[:limit]
    )
    return list(reversed(list(newest)))
