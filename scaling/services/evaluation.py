"""Evaluating services: read metrics and history, run the pure evaluator, act through the executor.

One evaluation of one service holds a Redis lock for that service, so beat, "evaluate now" and a
manual scale never act on it at the same time. Every evaluation writes a ScalingDecision, failed or
not; a failure also lands on the service (last_error) and, once stored, is sent as core's failure
event (kind scaling_failure; alerts fire on it). In a tick, one service's failure never stops the
others. Dry run (or a disabled or paused service evaluated by hand) never calls the executor's
scale_to().

"Current" replicas are the count Perfpilot last applied when there is one (the HPA's
spec.replicas), else the executor's observed count; when the observed count drifted from it (a
gunicorn HUP, a restarted worker) the next action re-applies the decided count.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.db.models import Case, Prefetch, Value, When
from django.utils import timezone

from core.errors import InvalidInput
from core.events import SCALING_FAILURE, failure_event_send
from core.locks import Lock, lock_acquire, lock_key, locks_acquire
from core.queueing import task_send_on_commit
from core.services import audit_record
from scaling import evaluator as ev
from scaling.executors.base import ExecutorContext, ExecutorError, executor_for
from scaling.models import ScaledService, ScalingDecision, ScalingRule
from scaling.schedules import cron_matches
from scaling.selectors import HistoryRow, RuleValue, decision_history, rule_values
from scaling.signals import scaling_executed

logger = logging.getLogger(__name__)


class ServiceBusy(InvalidInput):
    """Another evaluation or action of this service is running: 409."""

    status_code = 409


def _replicas(count: int) -> str:
    return f"{count} replica{'' if count == 1 else 's'}"


def _service_lock(service: ScaledService) -> Lock:
    """The service's lock, taken now, or ServiceBusy while another evaluation or action of it runs."""
    lock = lock_acquire(lock_key("scale", service.id))
    if lock is None:
        raise ServiceBusy(f"Service {service.name!r} is being evaluated or scaled right now; try again shortly.")
    return lock


def behavior_of(service: ScaledService, direction: str) -> ev.Behavior:
    return ev.Behavior(
        stabilization_seconds=getattr(service, f"scale_{direction}_stabilization_seconds"),
        policies=tuple(
            ev.Policy(p["type"], p["value"], p["period_seconds"])
            for p in getattr(service, f"scale_{direction}_policies")
        ),
        select=getattr(service, f"scale_{direction}_select"),
    )


def history_window(service: ScaledService) -> timedelta:
    periods = [p["period_seconds"] for p in service.scale_up_policies + service.scale_down_policies]
    longest = max([service.scale_up_stabilization_seconds, service.scale_down_stabilization_seconds, *periods])
    return timedelta(seconds=longest + 1)


def history_inputs(rows: Sequence[HistoryRow]) -> tuple[list[ev.Recommendation], list[ev.ScaleEvent]]:
    recommendations = [ev.Recommendation(r.at, r.recommended) for r in rows if r.recommended is not None]
    events = [
        ev.ScaleEvent(r.at, r.desired - r.current)
        for r in rows
        if r.executed and r.desired is not None and r.current is not None and r.desired != r.current
    ]
    return recommendations, events


def with_rules_and_schedules(queryset):
    """Services with their rules and schedules as plain lists (a related manager's .all() clones a queryset
    per call, which costs more than the evaluation over 1,000 services)."""
    return queryset.prefetch_related(
        Prefetch(
            "rules", queryset=ScalingRule.objects.select_related("promql_source").order_by("name"), to_attr="rule_list"
        ),
        Prefetch("schedules", to_attr="schedule_list"),
    )


def _rules_of(service: ScaledService) -> list[ScalingRule]:
    cached = getattr(service, "rule_list", None)
    return cached if cached is not None else list(service.rules.all())


def _schedules_of(service: ScaledService) -> list:
    cached = getattr(service, "schedule_list", None)
    return cached if cached is not None else list(service.schedules.all())


def active_schedules(service: ScaledService, now: datetime) -> list[ev.ScheduleWindow]:
    local = timezone.localtime(now)
    return [
        ev.ScheduleWindow(s.name, s.min_replicas, s.max_replicas)
        for s in _schedules_of(service)
        if s.enabled and cron_matches(s.cron, local)
    ]


def rule_inputs(rules: Sequence[ScalingRule], values: dict[int, RuleValue]) -> list[ev.RuleInput]:
    return [
        ev.RuleInput(
            name=rule.name,
            target=rule.target_value,
            value=values[rule.id].value,
            tolerance=rule.tolerance,
            target_type=rule.target_type,
            unit=values[rule.id].series.unit,
            error=values[rule.id].error,
        )
        for rule in rules
    ]


@dataclass
class Prepared:
    """Reads shared by the services of one tick (one query each, whatever the number of services)."""

    now: datetime
    values: dict[int, RuleValue]
    history: dict[int, list[HistoryRow]]
    rules: dict[int, list[ScalingRule]] = field(default_factory=dict)


def prepare(services: Sequence[ScaledService], now: datetime) -> Prepared:
    rules = {s.id: [r for r in _rules_of(s) if r.enabled] for s in services}
    all_rules = [r for rs in rules.values() for r in rs]
    since = now - max((history_window(s) for s in services), default=timedelta(seconds=1))
    return Prepared(
        now=now,
        values=rule_values(rules=all_rules, now=now),
        history=decision_history(service_ids=[s.id for s in services], since=since),
        rules=rules,
    )


def _context(service: ScaledService) -> ExecutorContext:
    return ExecutorContext(
        service=service.name, applied_replicas=service.applied_replicas, min_replicas=service.min_replicas
    )


def _failed(service: ScaledService, decision: ScalingDecision, error: str, now: datetime) -> ScalingDecision:
    decision.result = ScalingDecision.Result.FAILED
    decision.error = error[:4000]
    decision.explanation = [*decision.explanation, f"Failed: {error}"]
    service.last_error, service.last_error_at = error[:4000], now
    return decision


def evaluate_prepared(
    *, service: ScaledService, prepared: Prepared, trigger: str = ScalingDecision.Trigger.BEAT, actor_name: str = ""
) -> ScalingDecision:
    """Evaluate one service with reads already made; act unless dry run. Returns the unsaved decision
    (the caller saves it) and updates the service's observed fields in memory."""
    now = prepared.now
    acting = service.enabled and not service.paused and not service.dry_run
    decision = ScalingDecision(
        service=service, created_at=now, trigger=trigger, dry_run=not acting, actor_name=actor_name
    )
    rules = prepared.rules.get(service.id) or [r for r in _rules_of(service) if r.enabled]
    try:
        executor = executor_for(service.executor_kind, service.full_config, context=_context(service))
        observed = executor.current()
    except ExecutorError as exc:
        decision.explanation = ["The executor could not report the current replicas."]
        return _failed(service, decision, str(exc), now)
    service.observed_replicas, service.observed_at = observed, now
    current = service.applied_replicas if service.applied_replicas is not None else observed
    recommendations, events = history_inputs(prepared.history.get(service.id, []))
    data = ev.EvaluationInput(
        current=current,
        rules=rule_inputs(rules, prepared.values),
        min_replicas=service.min_replicas,
        max_replicas=service.max_replicas,
        now=now,
        scale_up=behavior_of(service, "up"),
        scale_down=behavior_of(service, "down"),
        recommendations=recommendations,
        events=events,
        active_schedules=active_schedules(service, now),
    )
    result = ev.evaluate(data)
    steps = list(result.steps)
    if observed != current:
        steps.insert(0, f"Observed {observed} replicas, but {current} were applied last: the count drifted.")
    decision.inputs = {
        "observed": observed,
        "current": current,
        "min_replicas": result.min_replicas,
        "max_replicas": result.max_replicas,
        "rules": {rule.name: _rule_input(prepared.values[rule.id]) for rule in rules},
        "history": {"recommendations": len(recommendations), "events": len(events)},
        "schedules": [s.name for s in data.active_schedules],
        "limited_by": result.limited_by,
    }
    decision.proposals = [p.as_dict() for p in result.proposals]
    decision.current_replicas = current
    decision.observed_replicas = observed
    decision.recommended_replicas = result.recommended
    decision.desired_replicas = result.desired
    decision.confidence = result.confidence
    rule_errors = [
        f"rule {rule.name}: {prepared.values[rule.id].error}" for rule in rules if prepared.values[rule.id].error
    ]
    if rule_errors and not result.has_data:
        # No rule gave a number and some could not be evaluated (a PromQL error, a source down): nothing is
        # acted on, and it is a failure to see (and alert on), not a quiet "no data".
        decision.explanation = steps
        return _failed(service, decision, "; ".join(rule_errors), now)
    needs_action = result.desired != observed
    if not needs_action:
        decision.result = ScalingDecision.Result.UNCHANGED
        if acting and service.applied_replicas is not None:
            service.applied_replicas = result.desired  # the running count is the right one: adopt it
        service.last_error = ""
    elif not acting:
        decision.result = ScalingDecision.Result.DRY_RUN
        why = "dry run" if service.dry_run else ("paused" if service.paused else "disabled")
        steps.append(f"Not executed ({why}): would set {_replicas(result.desired)}.")
        service.last_error = ""
    else:
        try:
            done = executor.scale_to(result.desired)
        except ExecutorError as exc:
            decision.explanation = steps
            return _failed(service, decision, str(exc), now)
        decision.executed = True
        decision.result = ScalingDecision.Result.SCALED
        service.applied_replicas = result.desired
        service.last_error = ""
        steps.append(f"Executed: {done}.")
    decision.explanation = steps
    return decision


def _rule_input(value: RuleValue) -> dict:
    """What a decision records of one rule's read: its value, when, what it reads, and its error if any."""
    recorded = {
        "value": value.value,
        "at": value.at.isoformat() if value.at else None,
        "reads": value.series.description,
        "series": list(value.series.series_ids),
    }
    if value.error:
        recorded["error"] = value.error
    return recorded


_SERVICE_STATE_FIELDS = ["observed_replicas", "observed_at", "applied_replicas", "last_error", "last_error_at"]


def _emit(decision: ScalingDecision) -> None:
    if decision.result == ScalingDecision.Result.FAILED:
        service = decision.service
        failure_event_send(
            sender=ScaledService,
            kind=SCALING_FAILURE,
            target=None,
            labels={"service": service.name, "tier": service.tier, "executor": service.executor_kind},
            message=f"Scaling {service.name} failed: {decision.error}",
        )
    elif decision.executed:
        scaling_executed.send_robust(sender=ScaledService, service=decision.service, decision=decision)


def _guarded(service: ScaledService, prepared: Prepared, trigger: str, actor_name: str) -> ScalingDecision:
    try:
        return evaluate_prepared(service=service, prepared=prepared, trigger=trigger, actor_name=actor_name)
    except Exception as exc:  # a bug or a broken service must not stop the others
        logger.exception("evaluation of scaling service %s failed", service.id)
        decision = ScalingDecision(service=service, created_at=prepared.now, trigger=trigger, actor_name=actor_name)
        return _failed(service, decision, f"{type(exc).__name__}: {exc}", prepared.now)


def service_evaluate(
    *,
    service: ScaledService,
    trigger: str = ScalingDecision.Trigger.MANUAL,
    actor=None,
    via: str = "system",
    now: datetime | None = None,
) -> ScalingDecision:
    """Evaluate one service now (beat's tick does many at once). Raises ServiceBusy when it is locked."""
    with _service_lock(service):
        now = now or timezone.now()
        service = with_rules_and_schedules(ScaledService.objects).get(pk=service.pk)
        prepared = prepare([service], now)
        actor_name = actor.get_username() if actor is not None else ""
        decision = _guarded(service, prepared, trigger, actor_name)
        with transaction.atomic():
            decision.save()
            service.save(update_fields=_SERVICE_STATE_FIELDS)
        if actor is not None:
            audit_record(
                actor=actor,
                via=via,
                action="scaling.evaluate",
                object_repr=service.name,
                result="failed" if decision.result == ScalingDecision.Result.FAILED else "ok",
                detail={"decision": decision.id, "result": decision.result, "desired": decision.desired_replicas},
            )
        _emit(decision)
        return decision


@dataclass
class TickResult:
    evaluated: int = 0
    skipped_locked: int = 0
    scaled: int = 0
    failed: int = 0
    dry_run: int = 0
    duration_ms: float = 0.0


def scaling_tick(*, now: datetime | None = None, service_ids: Sequence[int] | None = None) -> TickResult:
    """Evaluate every enabled, unpaused service once (beat's task). Never raises for one service."""
    started = time.perf_counter()
    now = now or timezone.now()
    # Critical services first: if a tick runs long, they are the ones already done.
    tier_order = Case(
        *(When(tier=tier, then=Value(rank)) for rank, tier in enumerate(ScaledService.Tier.values)),
        default=Value(len(ScaledService.Tier.values)),
    )
    queryset = with_rules_and_schedules(ScaledService.objects.filter(enabled=True, paused=False)).order_by(
        tier_order, "name"
    )
    if service_ids is not None:
        queryset = queryset.filter(pk__in=service_ids)
    services = list(queryset)
    result = TickResult()
    if not services:
        return result
    # The same keys as service_evaluate's, taken in one round trip; the order (critical first) is kept.
    by_key = {lock_key("scale", s.id): s for s in services}
    locks = locks_acquire(list(by_key))
    result.skipped_locked = len(services) - len(locks.keys)
    services = [by_key[key] for key in locks.keys]
    with locks:
        prepared = prepare(services, now)
        quiet: list[ScalingDecision] = []
        for service in services:
            decision = _guarded(service, prepared, ScalingDecision.Trigger.BEAT, "")
            result.evaluated += 1
            if decision.executed or decision.result == ScalingDecision.Result.FAILED:
                # Actions and failures are written at once; a crash later in the tick must not lose them.
                with transaction.atomic():
                    decision.save()
                    service.save(update_fields=_SERVICE_STATE_FIELDS)
                _emit(decision)
                result.scaled += decision.executed
                result.failed += decision.result == ScalingDecision.Result.FAILED
            else:
                quiet.append(decision)
                result.dry_run += decision.result == ScalingDecision.Result.DRY_RUN
        with transaction.atomic():
            _decisions_copy(quiet)
            _services_state_write([d.service for d in quiet])
    result.duration_ms = (time.perf_counter() - started) * 1000
    return result


_COPY_COLUMNS = (
    "service_id",
    "created_at",
    "trigger",
    "inputs",
    "proposals",
    "current_replicas",
    "observed_replicas",
    "recommended_replicas",
    "desired_replicas",
    "executed",
    "dry_run",
    "result",
    "error",
    "explanation",
    "confidence",
    "actor_name",
)


def _decisions_copy(decisions: list[ScalingDecision]) -> None:
    """Write a tick's quiet decisions with one COPY (they need no ids back)."""
    if not decisions:
        return
    with connection.cursor() as cursor:
        raw = cursor.cursor  # psycopg's own cursor: Django's wrapper has no copy()
        with raw.copy(f"COPY scaling_scalingdecision ({', '.join(_COPY_COLUMNS)}) FROM STDIN") as copy:
            for d in decisions:
                copy.write_row(
                    (
                        d.service_id,
                        d.created_at,
                        d.trigger,
                        json.dumps(d.inputs),
                        json.dumps(d.proposals),
                        d.current_replicas,
                        d.observed_replicas,
                        d.recommended_replicas,
                        d.desired_replicas,
                        d.executed,
                        d.dry_run,
                        d.result,
                        d.error,
                        json.dumps(d.explanation),
                        d.confidence,
                        d.actor_name,
                    )
                )


def _services_state_write(services: list[ScaledService]) -> None:
    """The observed state of many services in one statement (Django's bulk_update is a CASE per row)."""
    if not services:
        return
    rows = [
        {
            "id": s.id,
            "observed": s.observed_replicas,
            "observed_at": s.observed_at.isoformat() if s.observed_at else None,
            "applied": s.applied_replicas,
            "last_error": s.last_error,
            "last_error_at": s.last_error_at.isoformat() if s.last_error_at else None,
        }
        for s in services
    ]
    # One JSON parameter: psycopg's client-side quoting of six 1,000-item arrays costs more than the UPDATE.
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE scaling_scaledservice AS s SET observed_replicas = v.observed, observed_at = v.observed_at, "
            "applied_replicas = v.applied, last_error = v.last_error, last_error_at = v.last_error_at "
            "FROM jsonb_to_recordset(%s::jsonb) AS v(id bigint, observed integer, observed_at timestamptz, "
            "applied integer, last_error text, last_error_at timestamptz) WHERE s.id = v.id",
            [json.dumps(rows)],
        )


def service_scale(
    *, service: ScaledService, replicas: int, actor, via: str, dry_run: bool | None = None
) -> ScalingDecision:
    """An operator's manual scale: through the executor (unless dry run), recorded and audited.

    The service keeps evaluating afterwards; pause it to hold a manual count.
    """
    if isinstance(replicas, bool) or not isinstance(replicas, int):
        raise InvalidInput("replicas must be a whole number.", field="replicas")
    if not service.min_replicas <= replicas <= service.max_replicas:
        raise InvalidInput(
            f"replicas must be between the service's min ({service.min_replicas}) and max ({service.max_replicas}).",
            field="replicas",
        )
    dry = service.dry_run if dry_run is None else dry_run
    with _service_lock(service):
        now = timezone.now()
        service.refresh_from_db()
        name = actor.get_username() if actor is not None else ""
        decision = ScalingDecision(
            service=service,
            created_at=now,
            trigger=ScalingDecision.Trigger.SCALE,
            dry_run=dry,
            actor_name=name,
            desired_replicas=replicas,
            recommended_replicas=None,
        )
        steps = [f"{name or 'Someone'} asked for {replicas} replicas by hand."]
        try:
            executor = executor_for(service.executor_kind, service.full_config, context=_context(service))
            observed = executor.current()
            service.observed_replicas, service.observed_at = observed, now
            current = service.applied_replicas if service.applied_replicas is not None else observed
            decision.current_replicas, decision.observed_replicas = current, observed
            decision.inputs = {"observed": observed, "current": current, "manual": replicas}
            if dry:
                decision.result = ScalingDecision.Result.DRY_RUN
                steps.append(f"Dry run: would change {observed} → {replicas}; the executor was not called.")
            else:
                done = executor.scale_to(replicas)
                decision.executed = True
                decision.result = ScalingDecision.Result.SCALED
                service.applied_replicas = replicas
                service.last_error = ""
                steps.append(f"Executed: {done}.")
            decision.explanation = steps
        except ExecutorError as exc:
            decision.explanation = steps
            _failed(service, decision, str(exc), now)
        with transaction.atomic():
            decision.save()
            service.save(update_fields=_SERVICE_STATE_FIELDS)
            audit_record(
                actor=actor,
                via=via,
                action="scaling.scale",
                object_repr=service.name,
                result="failed" if decision.result == ScalingDecision.Result.FAILED else "ok",
                detail={"replicas": replicas, "dry_run": dry, "decision": decision.id, "error": decision.error},
            )
        _emit(decision)
        return decision


def evaluate_all_queue(*, actor, via: str) -> tuple[str, int]:
    """Queue an evaluation of every enabled service now (after the transaction commits); audited.
    Returns the task id (chosen now, so it is known even before the commit) and the service count."""
    from scaling.tasks import evaluate_all_task

    task_id = str(uuid.uuid4())  # the form of Celery's own task ids
    task_send_on_commit(evaluate_all_task, [()], task_id=task_id)  # QueueUnavailable when the broker is down
    count = ScaledService.objects.filter(enabled=True, paused=False).count()
    audit_record(
        actor=actor,
        via=via,
        action="scaling.evaluate_all",
        object_repr=f"{count} services",
        detail={"task_id": task_id},
    )
    return task_id, count


def decisions_prune(*, now: datetime | None = None, days: int) -> int:
    cutoff = (now or timezone.now()) - timedelta(days=days)
    deleted, _ = ScalingDecision.objects.filter(created_at__lt=cutoff).delete()
    return deleted
