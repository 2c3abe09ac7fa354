"""Running tuners and applying recommendations: every run is an OptimizationRun row.

A run is created (pending) by whoever asks for it, then executed by a Celery task under the
target's Redis lock, so two runs on one target never overlap; a run that finds the lock held is
recorded as skipped. Actions happen only outside dry runs and inside the maintenance window;
outside it they are deferred (tuner runs) or refused (applies), with the reason in the log.
"""

from __future__ import annotations

import logging
import re
import time
from datetime import datetime
from datetime import time as dtime
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from core.conninfo import scrub
from core.errors import Conflict, InvalidInput
from core.events import TUNER_FAILURE, failure_event_send
from core.locks import lock_acquire, lock_holder, lock_key, owner_identity
from core.models import AuditEvent
from core.queueing import QueueUnavailable, task_send_on_commit
from core.services import audit_record
from monitoring.models import Target
from optimizer.models import OptimizationRun, Recommendation
from optimizer.services.liveness import RunHeartbeat, recommendation_release
from optimizer.services.plan_regressions import plan_captures_record
from optimizer.services.recommendations import recommendations_sync
from optimizer.services.sessions import open_session
from optimizer.services.space import relation_sizes_record
from optimizer.tuners.base import LockHeld, TunerError, WindowClosed, check_params, tuner_class

logger = logging.getLogger(__name__)


# Options of a run itself, as opposed to the tuner's own parameters.
def _categories(value: Any) -> list[str]:
    """auto_apply: recommendation categories a run applies on its own (the "auto policy" trigger)."""
    if not isinstance(value, list) or not all(v in Recommendation.Category.values for v in value):
        raise ValueError
    return value


RUN_OPTIONS = {
    "maintenance_window": str,
    "auto_apply": _categories,
    "statement_timeout_seconds": float,
    "action_timeout_seconds": float,
    "lock_timeout_seconds": float,
}
_WINDOW = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
VIA_BY_TRIGGER = {
    OptimizationRun.Trigger.OPERATOR: "ui",
    OptimizationRun.Trigger.API: "api",
    OptimizationRun.Trigger.SCHEDULE: "system",
    OptimizationRun.Trigger.POLICY: "system",
}


# --- maintenance window ----------------------------------------------------------------------


def parse_window(text: str) -> tuple[dtime, dtime] | None:
    """'01:00-05:00' as (start, end); None for an empty text. Windows may wrap midnight."""
    if not text or not text.strip():
        return None
    match = _WINDOW.match(text)
    if not match:
        raise InvalidInput(f"A maintenance window looks like 01:00-05:00, not {text!r}.", field="maintenance_window")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59:
        raise InvalidInput(f"{text!r} is not a time range of one day.", field="maintenance_window")
    return dtime(h1, m1), dtime(h2, m2)


def window_open(window: tuple[dtime, dtime] | None, *, now: datetime | None = None) -> bool:
    if window is None:
        return True
    current = timezone.localtime(now or timezone.now()).time()
    start, end = window
    if start <= end:
        return start <= current < end
    return current >= start or current < end


def _window_of(run: OptimizationRun) -> tuple[str, tuple[dtime, dtime] | None]:
    text = run.params.get("maintenance_window", settings.OPTIMIZER_MAINTENANCE_WINDOW) or ""
    return text, parse_window(text)


# --- creating runs ---------------------------------------------------------------------------


def _actor_name(actor: AbstractBaseUser | None) -> str:
    return actor.get_username() if actor is not None and actor.is_authenticated else "system"


def _split_params(kind: str, params: dict[str, Any]) -> dict[str, Any]:
    cls = tuner_class(kind)
    options = {}
    tuner_params = {}
    for name, value in (params or {}).items():
        if name in RUN_OPTIONS:
            try:
                options[name] = RUN_OPTIONS[name](value)
            except (TypeError, ValueError):
                expected = (
                    f"a list of categories ({', '.join(Recommendation.Category.values)})"
                    if name == "auto_apply"
                    else f"a {RUN_OPTIONS[name].__name__}"
                )
                raise InvalidInput(f"{name} must be {expected}.", field=name) from None
            if name.endswith("_seconds") and options[name] <= 0:
                raise InvalidInput(f"{name} must be more than 0.", field=name)
        else:
            tuner_params[name] = value
    if "maintenance_window" in options:
        parse_window(options["maintenance_window"])
    try:
        return {**options, **check_params(cls, tuner_params)}
    except TunerError as exc:
        raise InvalidInput(str(exc), field=exc.field) from exc


def run_create(
    *,
    tuner: str,
    target: Target,
    trigger: str,
    actor: AbstractBaseUser | None,
    dry_run: bool,
    params: dict[str, Any] | None = None,
    action: str = OptimizationRun.Action.RUN,
    recommendation: Recommendation | None = None,
) -> OptimizationRun:
    try:
        cls = tuner_class(tuner)
    except TunerError as exc:
        raise InvalidInput(str(exc), field="tuners") from exc
    if target.kind not in cls.target_kinds:
        kinds = " or ".join(cls.target_kinds)
        raise InvalidInput(
            f"Tuner {tuner} works on {kinds} targets; {target.name} is {target.get_kind_display()}.", field="targets"
        )
    return OptimizationRun.objects.create(
        tuner=tuner,
        action=action,
        target=target,
        target_name=target.name,
        recommendation=recommendation,
        trigger=trigger,
        started_by=actor if actor is not None and actor.is_authenticated else None,
        started_by_name=_actor_name(actor),
        params=_split_params(tuner, params or {}),
        dry_run=dry_run,
    )


def _enqueue(runs: list[OptimizationRun]) -> None:
    """Send the runs to the workers once they are committed; if the queue refuses, none stays pending."""
    from optimizer.tasks import execute_run_task

    task_send_on_commit(execute_run_task, [(run.id,) for run in runs], on_failure=_runs_not_queued)


def _runs_not_queued(unsent: list[tuple], error: QueueUnavailable) -> None:
    """The broker did not take these runs' tasks: they end failed with the reason (the caller answers
    503 with it), and an apply gives its recommendation back, open."""
    run_ids = [args[0] for args in unsent]
    reason = f"Not started: {error}"
    for run in OptimizationRun.objects.filter(pk__in=run_ids, status=OptimizationRun.Status.PENDING).select_related(
        "started_by"
    ):
        ended = OptimizationRun.objects.filter(pk=run.pk, status=OptimizationRun.Status.PENDING).update(
            status=OptimizationRun.Status.FAILED, error=reason, finished_at=timezone.now()
        )
        if ended:
            run.refresh_from_db()
            recommendation_release(run)
            audit_run(run)


@transaction.atomic
def runs_start(
    *,
    tuners: list[str],
    targets: list[Target],
    dry_run: bool,
    actor: AbstractBaseUser | None,
    trigger: str,
    params: dict[str, Any] | None = None,
) -> list[OptimizationRun]:
    """Create one pending run per (tuner, target) that fits, and send each to the workers."""
    if not tuners:
        raise InvalidInput("Name at least one tuner.", field="tuners")
    if not targets:
        raise InvalidInput("Name at least one target.", field="targets")
    runs = []
    for kind in tuners:
        cls_kinds = tuner_class(kind).target_kinds if kind in _known() else None
        for target in targets:
            if cls_kinds is not None and target.kind not in cls_kinds and (len(targets) > 1 or len(tuners) > 1):
                continue  # a mixed request runs each tuner on the targets it fits
            run = run_create(tuner=kind, target=target, trigger=trigger, actor=actor, dry_run=dry_run, params=params)
            runs.append(run)
    if not runs:
        raise InvalidInput("None of these tuners works on these targets.", field="tuners")
    _enqueue(runs)
    return runs


def _known() -> set[str]:
    from optimizer.tuners.base import all_tuners

    return set(all_tuners())


@transaction.atomic
def recommendation_apply_start(
    *, recommendation: Recommendation, actor: AbstractBaseUser | None, trigger: str, dry_run: bool = False
) -> OptimizationRun:
    """Claim an open recommendation (open -> applying, one conditional UPDATE: of two requests at the
    same moment exactly one wins, the other gets Conflict naming the status) and queue its apply run.
    The run gives the claim back (open, with the reason) unless it applies the recommendation."""
    if not recommendation.statements:
        raise InvalidInput(f"Recommendation {recommendation.id} is advice only; it has no statement to run.")
    claimed = Recommendation.objects.filter(pk=recommendation.pk, status=Recommendation.Status.OPEN).update(
        status=Recommendation.Status.APPLYING,
        status_changed_at=timezone.now(),
        status_changed_by=_actor_name(actor),
        apply_error="",
    )
    if claimed != 1:
        status = Recommendation.objects.filter(pk=recommendation.pk).values_list("status", flat=True).first()
        if status == Recommendation.Status.APPLYING:
            message = f"Recommendation {recommendation.id} is already being applied (status applying)."
        else:
            message = f"Recommendation {recommendation.id} is {status}; only open ones can be applied."
        raise Conflict(message, field="status")
    recommendation.status = Recommendation.Status.APPLYING
    run = run_create(
        tuner=recommendation.tuner,
        target=recommendation.target,
        trigger=trigger,
        actor=actor,
        dry_run=dry_run,
        action=OptimizationRun.Action.APPLY,
        recommendation=recommendation,
    )
    _enqueue([run])
    return run


@transaction.atomic
def recommendation_dismiss(*, recommendation: Recommendation, actor: AbstractBaseUser | None, via: str):
    if recommendation.status == Recommendation.Status.APPLIED:
        raise InvalidInput(f"Recommendation {recommendation.id} was applied already.", field="status")
    if recommendation.status == Recommendation.Status.APPLYING:
        raise Conflict(f"Recommendation {recommendation.id} is being applied (status applying).", field="status")
    recommendation.status = Recommendation.Status.DISMISSED
    recommendation.status_changed_at = timezone.now()
    recommendation.status_changed_by = _actor_name(actor)
    recommendation.save(update_fields=["status", "status_changed_at", "status_changed_by"])
    audit_record(
        actor=actor,
        via=via,
        action="optimizer.recommendation.dismiss",
        object_repr=recommendation.title,
        detail={"recommendation": recommendation.id, "target": recommendation.target.name},
    )
    return recommendation


# --- executing runs --------------------------------------------------------------------------


def run_time_limit() -> int:
    """Seconds a run may take: one action may use the whole action timeout, plus room for the rest."""
    return max(settings.CELERY_TASK_SOFT_TIME_LIMIT, settings.OPTIMIZER_ACTION_TIMEOUT_SECONDS + 300)


def run_execute(*, run_id: int, wait: bool = False) -> OptimizationRun:
    """Execute a pending run. Never raises for a target's failure: the run records it.

    When another run holds the target's lock, the run is skipped, or with `wait` put back to pending
    for the caller (the task) to try again later.
    """
    # The claim records the owner (this process, its Celery task) and a first heartbeat: from now on
    # the reaper can tell a run whose worker died from one still working.
    claimed = OptimizationRun.objects.filter(pk=run_id, status=OptimizationRun.Status.PENDING).update(
        status=OptimizationRun.Status.RUNNING, owner=owner_identity(), heartbeat_at=timezone.now()
    )
    run = OptimizationRun.objects.select_related("target", "recommendation", "started_by").get(pk=run_id)
    if claimed != 1:
        return run  # another worker (or a retry) has it, or the reaper ended it
    with RunHeartbeat(run.id):
        return _execute_claimed(run, wait=wait)


def _execute_claimed(run: OptimizationRun, *, wait: bool) -> OptimizationRun:
    started = time.perf_counter()
    finished_at = None
    run.started_at = timezone.now()
    try:
        if run.target is None:
            raise TunerError("The target of this run was deleted.")
        key = lock_key("optimize", run.target.id)
        lock = lock_acquire(key, label=f"run {run.id}")
        if lock is None:
            holder = lock_holder(key)
            held_by = f" ({holder})" if holder else ""
            raise LockHeld(
                f"Another optimizer run on {run.target.name} is still in progress{held_by}; "
                "runs on one target never overlap."
            )
        # Start and end are taken inside the lock, so runs of one target never overlap in the log either.
        with lock:
            run.started_at = timezone.now()
            OptimizationRun.objects.filter(pk=run.pk).update(started_at=run.started_at)
            try:
                if run.action == OptimizationRun.Action.APPLY:
                    _apply(run)
                else:
                    _run_tuner(run)
            finally:
                finished_at = timezone.now()
    except LockHeld as exc:
        if wait:  # the heartbeat shows the reaper that a task still comes back for it
            OptimizationRun.objects.filter(pk=run.pk, status=OptimizationRun.Status.RUNNING).update(
                status=OptimizationRun.Status.PENDING, summary=f"Waiting: {exc}", heartbeat_at=timezone.now()
            )
            run.refresh_from_db()
            return run
        run.status, run.error = OptimizationRun.Status.SKIPPED, str(exc)
    except WindowClosed as exc:
        run.status, run.error = OptimizationRun.Status.DEFERRED, str(exc)
    except TunerError as exc:
        run.status, run.error = OptimizationRun.Status.FAILED, str(exc)
    except Exception as exc:  # a tuner bug must not stop other runs; it is recorded
        logger.exception("optimizer run %s failed", run.id)
        message = f"{type(exc).__name__}: {exc}"
        run.status = OptimizationRun.Status.FAILED
        run.error = scrub(message, run.target.url) if run.target else message
    else:
        if run.status == OptimizationRun.Status.RUNNING:
            run.status = OptimizationRun.Status.SUCCEEDED
    run.finished_at = finished_at or timezone.now()
    run.duration_ms = round((time.perf_counter() - started) * 1000, 2)
    # Only while still ours: a run the reaper ended meanwhile (we looked dead) keeps its verdict.
    values = {
        field.attname: getattr(run, field.attname)
        for field in OptimizationRun._meta.concrete_fields
        if field.name not in ("id", "created_at", "heartbeat_at")  # the heartbeat thread writes that one
    }
    if not OptimizationRun.objects.filter(pk=run.pk, status=OptimizationRun.Status.RUNNING).update(**values):
        logger.warning(
            "optimizer run %s was ended by the reaper before it finished here; its result is dropped", run.id
        )
        run.refresh_from_db()
        return run
    recommendation_release(run)
    audit_run(run)
    if run.status == OptimizationRun.Status.FAILED:
        failure_report(run)
    return run


def failure_report(run: OptimizationRun, *, verb: str = "failed") -> None:
    """Report a failed (or interrupted) run or apply as a tuner failure event (alerts fire on it),
    once it is stored."""
    failure_event_send(
        sender=OptimizationRun,
        kind=TUNER_FAILURE,
        target=run.target,
        labels={"tuner": run.tuner, "action": run.action},
        message=f"{run.tuner} {run.action} on {run.target_name} {verb}: {run.error}",
    )


def audit_run(run: OptimizationRun) -> None:
    ok = run.status in (OptimizationRun.Status.SUCCEEDED, OptimizationRun.Status.DEFERRED)
    audit_record(
        actor=run.started_by,
        via=VIA_BY_TRIGGER.get(run.trigger, "system"),
        action=f"optimizer.{run.action}",
        object_repr=f"{run.tuner} on {run.target_name}",
        result=AuditEvent.Result.OK if ok else AuditEvent.Result.FAILED,
        detail={
            "run": run.id,
            "status": run.status,
            "dry_run": run.dry_run,
            "statements": [s["statement"] for s in run.statements][:50],
            "error": run.error[:500],
        },
    )


def _session_kwargs(run: OptimizationRun) -> dict:
    return {
        "target": run.target,
        "dry_run": run.dry_run,
        "statement_timeout_seconds": run.params.get("statement_timeout_seconds"),
        "action_timeout_seconds": run.params.get("action_timeout_seconds"),
        "lock_timeout_seconds": run.params.get("lock_timeout_seconds"),
    }


def _tuner_params(run: OptimizationRun) -> dict:
    return {k: v for k, v in run.params.items() if k not in RUN_OPTIONS}


def _remember_pid(run: OptimizationRun):
    def record(pid: int) -> None:
        if run.backend_pid != pid:
            run.backend_pid = pid
            OptimizationRun.objects.filter(pk=run.pk).update(backend_pid=pid)

    return record


def _watch(run: OptimizationRun, session) -> None:
    """Write what is known to the row as the run goes (the evidence before, each statement as it
    starts), so a run whose worker dies still says what it did and what was running."""
    session.on_backend = _remember_pid(run)

    def statement_starts(statement: str) -> None:
        OptimizationRun.objects.filter(pk=run.pk).update(
            statements=[*session.executed, {"statement": statement, "in_progress": True}],
            evidence_before=run.evidence_before,
        )

    session.on_statement = statement_starts


def _run_tuner(run: OptimizationRun) -> None:
    cls = tuner_class(run.tuner)
    with open_session(**_session_kwargs(run)) as session:
        _watch(run, session)
        tuner = cls(session, params=_tuner_params(run))
        analysis = tuner.analyze()
        if analysis.relation_sizes:  # a reading of the target, not a change to it: kept in dry runs too
            relation_sizes_record(target=run.target, rows=analysis.relation_sizes)
        recommendations = recommendations_sync(target=run.target, tuner=run.tuner, findings=analysis.findings)
        run.evidence_before = {**analysis.evidence, "recommendations_open": len(recommendations)}
        actions = analysis.actions
        parts = [f"{len(recommendations)} open recommendation(s)", *analysis.notes]
        if analysis.captures:
            regressions = plan_captures_record(target=run.target, snapshots=analysis.captures)
            run.evidence_before["plan_regressions"] = [r.id for r in regressions]
            parts.append(f"{len(analysis.captures)} plan(s) captured, {len(regressions)} plan regression(s)")
        if actions:
            window_text, window = _window_of(run)
            if not run.dry_run and not window_open(window):
                run.evidence_before["actions_deferred"] = len(actions)
                run.statements = [{"statement": a.statement, "deferred": True} for a in actions]
                raise WindowClosed(
                    f"Outside the maintenance window {window_text}: {len(actions)} action(s) deferred to the window."
                )
            run.evidence_before["actions"] = tuner.measure(actions)
            try:
                for action in actions:
                    tuner.perform(action)
            finally:
                run.statements = session.executed
            if not run.dry_run:
                run.evidence_after = {"actions": tuner.measure(actions)}
            verb = "would run" if run.dry_run else "ran"
            parts.append(f"{verb} {len(actions)} action(s)")
        policy = [r for r in recommendations if r.category in run.params.get("auto_apply", []) and r.statements]
        if policy and not run.dry_run:
            started = 0
            for recommendation in policy:
                try:
                    recommendation_apply_start(
                        recommendation=recommendation, actor=run.started_by, trigger=OptimizationRun.Trigger.POLICY
                    )
                    started += 1
                except InvalidInput:  # already being applied
                    continue
                except QueueUnavailable as exc:
                    parts.append(f"auto policy stopped: {exc}")
                    break
            parts.append(f"auto policy: applying {started} recommendation(s)")
        run.summary = "; ".join(parts)


def _apply(run: OptimizationRun) -> None:
    recommendation = run.recommendation
    if recommendation is None:
        raise TunerError("The recommendation of this run was deleted.")
    window_text, window = _window_of(run)
    if not run.dry_run and not window_open(window):
        raise WindowClosed(f"Outside the maintenance window {window_text}: apply refused; try again inside it.")
    cls = tuner_class(run.tuner)
    with open_session(**_session_kwargs(run)) as session:
        _watch(run, session)
        tuner = cls(session, params={})
        run.evidence_before = tuner.evidence_for(recommendation)
        try:
            tuner.apply(recommendation)
        finally:
            run.statements = session.executed
        if run.dry_run:
            run.summary = f"Dry run: would run {len(recommendation.statements)} statement(s)"
            return
        run.evidence_after = tuner.evidence_for(recommendation)
    run.summary = f"Applied: {recommendation.title}"  # the recommendation becomes applied once the run is stored


def scheduled_runs(
    *, tuner: str, target_id: int | None, dry_run: bool, params: dict[str, Any] | None = None
) -> list[OptimizationRun]:
    """Run a tuner now (in this worker) on one target, or on every enabled target it fits."""
    cls = tuner_class(tuner)
    targets = Target.objects.filter(enabled=True, kind__in=cls.target_kinds)
    if target_id is not None:
        targets = targets.filter(pk=target_id)
    runs = []
    for target in targets:
        try:
            run = run_create(
                tuner=tuner,
                target=target,
                trigger=OptimizationRun.Trigger.SCHEDULE,
                actor=None,
                dry_run=dry_run,
                params=params,
            )
        except InvalidInput as exc:  # a bad schedule argument is recorded, never raised into beat's worker
            run = OptimizationRun.objects.create(
                tuner=tuner,
                target=target,
                target_name=target.name,
                trigger=OptimizationRun.Trigger.SCHEDULE,
                started_by_name="system",
                dry_run=dry_run,
                status=OptimizationRun.Status.FAILED,
                error=str(exc),
                finished_at=timezone.now(),
            )
            failure_report(run)
            runs.append(run)
            continue
        runs.append(run_execute(run_id=run.id))
    return runs
