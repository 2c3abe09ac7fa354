"""Scaling API: status, evaluate, execute, services and rules (CRUD), decisions, what-if.

Viewers read; operators act. Services and rules are addressed by name. Bad input answers 4xx
with a JSON body naming the problem (a `field` where there is one); a busy service answers 409.
"""

from __future__ import annotations

from typing import Annotated

from django.shortcuts import get_object_or_404
from ninja import Path, Query, Router, Status

from core.api import ERRORS, section_router
from core.errors import InvalidInput
from core.roles import OPERATOR, ensure_role
from core.schemas import ErrorOut
from monitoring.timeranges import parse_time
from scaling.models import ScaledService, ScalingRule, ScheduleOverride
from scaling.schemas import (
    DecisionOut,
    EvaluateIn,
    EvaluateQueuedOut,
    ReplayOut,
    ScaleExecuteIn,
    ScalingRuleCreateIn,
    ScalingRuleIn,
    ScalingRuleOut,
    ScalingRulePatchIn,
    ScheduleOverrideIn,
    ScheduleOverrideOut,
    ServiceIn,
    ServiceOut,
    ServicePatchIn,
    ServiceStatusOut,
)
from scaling.selectors import decision_list, service_status_rows
from scaling.services.crud import (
    NAME_RE,
    ServiceInput,
    rule_delete,
    rule_upsert,
    schedule_create,
    schedule_delete,
    service_create,
    service_delete,
    service_update,
)
from scaling.services.evaluation import evaluate_all_queue, service_evaluate, service_scale
from scaling.services.whatif import rule_replay

# A service or rule in the path: its name, as services and rules are named (scaling.services.crud).
PathName = Annotated[str, Path(..., pattern=NAME_RE.pattern)]

router = Router(tags=["scaling"])
router.add_router("/", section_router("scaling"))
WRITE_ERRORS = {400: ErrorOut, 409: ErrorOut, **ERRORS}
PREFIX = "/performance/scaling"


def _service(name: str) -> ScaledService:
    return get_object_or_404(ScaledService.objects.prefetch_related("rules__promql_source", "schedules"), name=name)


def _service_by_name(name: str) -> ScaledService:
    service = ScaledService.objects.filter(name=name).first()
    if service is None:
        raise InvalidInput(f"No scaled service named {name!r}.", field="service")
    return service


def _policies(items) -> list[dict] | None:
    return None if items is None else [item.dict() for item in items]


# --- status, evaluate, execute ------------------------------------------------------------------


@router.get(f"{PREFIX}/status", response=list[ServiceStatusOut], summary="Every service: replicas and why")
def scaling_status(request):
    return service_status_rows()


@router.post(
    f"{PREFIX}/evaluate",
    response={200: DecisionOut, 202: EvaluateQueuedOut, **WRITE_ERRORS},
    summary="Evaluate now",
)
def scaling_evaluate(request, payload: EvaluateIn):
    """With `service`: evaluate it now and answer its decision. Without: queue an evaluation of all."""
    ensure_role(request.auth, OPERATOR)
    if payload.service:
        service = _service_by_name(payload.service)
        return service_evaluate(service=service, actor=request.auth, via="api")
    task_id, count = evaluate_all_queue(actor=request.auth, via="api")
    return Status(202, {"task_id": task_id, "services": count})


@router.post(f"{PREFIX}/execute", response={200: DecisionOut, **WRITE_ERRORS}, summary="Scale by hand")
def scaling_execute(request, payload: ScaleExecuteIn):
    """Set a service's replicas through its executor (a dry run unless the service or `dry_run` says otherwise).
    Audited. Evaluation goes on afterwards: pause the service to hold the count."""
    ensure_role(request.auth, OPERATOR)
    service = _service_by_name(payload.service)
    return service_scale(
        service=service, replicas=payload.replicas, actor=request.auth, via="api", dry_run=payload.dry_run
    )


# --- services -------------------------------------------------------------------------------------


@router.get(f"{PREFIX}/services", response=list[ServiceOut], summary="List scaled services")
def services_list(request):
    return list(ScaledService.objects.prefetch_related("rules__promql_source", "schedules"))


@router.post(f"{PREFIX}/services", response={201: ServiceOut, **WRITE_ERRORS}, summary="Add a scaled service")
def services_create(request, payload: ServiceIn):
    ensure_role(request.auth, OPERATOR)
    data = payload.dict()
    data["scale_up_policies"] = _policies(payload.scale_up_policies)
    data["scale_down_policies"] = _policies(payload.scale_down_policies)
    service = service_create(data=ServiceInput(**data), actor=request.auth, via="api")
    return Status(201, _service(service.name))


@router.get(f"{PREFIX}/services/{{service}}", response={200: ServiceOut, **ERRORS}, summary="One service")
def services_get(request, service: PathName):
    return _service(service)


@router.patch(f"{PREFIX}/services/{{service}}", response={200: ServiceOut, **WRITE_ERRORS}, summary="Change")
def services_patch(request, service: PathName, payload: ServicePatchIn):
    ensure_role(request.auth, OPERATOR)
    changes = payload.dict(exclude_unset=True)
    for key in ("scale_up_policies", "scale_down_policies"):
        if key in changes:
            changes[key] = _policies(getattr(payload, key))
    updated = service_update(service=_service(service), changes=changes, actor=request.auth, via="api")
    return _service(updated.name)


@router.delete(f"{PREFIX}/services/{{service}}", response={204: None, **ERRORS}, summary="Delete a service")
def services_delete(request, service: PathName):
    ensure_role(request.auth, OPERATOR)
    service_delete(service=_service(service), actor=request.auth, via="api")
    return Status(204, None)


# --- rules ------------------------------------------------------------------------------------------


@router.get(f"{PREFIX}/services/{{service}}/rules", response={200: list[ScalingRuleOut], **ERRORS}, summary="Rules")
def rules_list(request, service: PathName):
    return list(_service(service).rules.all())


@router.post(
    f"{PREFIX}/services/{{service}}/rules", response={201: ScalingRuleOut, **WRITE_ERRORS}, summary="Add a rule"
)
def rules_create(request, service: PathName, payload: ScalingRuleCreateIn):
    ensure_role(request.auth, OPERATOR)
    owner = _service(service)
    data = payload.dict(exclude={"name"})
    if owner.rules.filter(name=payload.name).exists():
        raise InvalidInput(f"Service {service!r} has a rule named {payload.name!r} already.", field="name")
    return Status(201, rule_upsert(service=owner, name=payload.name, data=data, actor=request.auth, via="api"))


@router.put(f"{PREFIX}/rule/{{service}}/{{rule}}", response={200: ScalingRuleOut, **WRITE_ERRORS}, summary="Set a rule")
def rule_put(request, service: PathName, rule: PathName, payload: ScalingRuleIn):
    """Create the rule or replace it whole (fields left out take their defaults)."""
    ensure_role(request.auth, OPERATOR)
    return rule_upsert(service=_service(service), name=rule, data=payload.dict(), actor=request.auth, via="api")


@router.patch(
    f"{PREFIX}/services/{{service}}/rules/{{rule}}",
    response={200: ScalingRuleOut, **WRITE_ERRORS},
    summary="Change a rule",
)
def rules_patch(request, service: PathName, rule: PathName, payload: ScalingRulePatchIn):
    ensure_role(request.auth, OPERATOR)
    existing = get_object_or_404(ScalingRule, service__name=service, name=rule)
    return rule_upsert(
        service=existing.service,
        name=rule,
        data=payload.dict(exclude_unset=True),
        actor=request.auth,
        via="api",
        partial=True,
    )


@router.delete(f"{PREFIX}/services/{{service}}/rules/{{rule}}", response={204: None, **ERRORS}, summary="Delete")
def rules_delete(request, service: PathName, rule: PathName):
    ensure_role(request.auth, OPERATOR)
    rule_delete(rule=get_object_or_404(ScalingRule, service__name=service, name=rule), actor=request.auth, via="api")
    return Status(204, None)


@router.get(
    f"{PREFIX}/services/{{service}}/rules/{{rule}}/whatif",
    response={200: ReplayOut, 400: ErrorOut, 502: ErrorOut, **ERRORS},
    summary="What-if replay of a rule",
)
def rules_whatif(
    request,
    service: PathName,
    rule: PathName,
    start: str = Query("-6h", alias="from"),
    end: str = Query("now", alias="to"),
    start_replicas: int | None = Query(None, ge=0, le=10_000),
):
    """The replicas the rule would have chosen over its recorded metric (works before it is enabled).

    A PromQL rule's history is its expression over the range (range_matrix, one step per 15 s or coarser):
    400 naming `expression` when it errs or gives several values at a step, 502 when its source cannot answer.
    """
    found = get_object_or_404(ScalingRule.objects.select_related("service"), service__name=service, name=rule)
    replay = rule_replay(
        rule=found, start=parse_time(start, "from"), end=parse_time(end, "to"), start_replicas=start_replicas
    )
    return {
        "service": replay.service,
        "rule": replay.rule,
        "target": replay.target,
        "start": replay.start,
        "end": replay.end,
        "changes": replay.changes,
        "within_tolerance_share": replay.within_tolerance_share,
        "steps": [
            {"ts": s.ts, "metric": s.metric, "simulated_metric": s.simulated_metric, "replicas": s.replicas}
            for s in replay.steps
        ],
    }


# --- schedules and decisions -----------------------------------------------------------------------


@router.post(
    f"{PREFIX}/services/{{service}}/schedules",
    response={201: ScheduleOverrideOut, **WRITE_ERRORS},
    summary="Add an override",
)
def schedules_create(request, service: PathName, payload: ScheduleOverrideIn):
    ensure_role(request.auth, OPERATOR)
    override = schedule_create(service=_service(service), actor=request.auth, via="api", **payload.dict())
    return Status(201, override)


@router.delete(
    f"{PREFIX}/services/{{service}}/schedules/{{schedule_id}}", response={204: None, **ERRORS}, summary="Delete"
)
def schedules_delete(request, service: PathName, schedule_id: int):
    ensure_role(request.auth, OPERATOR)
    override = get_object_or_404(ScheduleOverride, pk=schedule_id, service__name=service)
    schedule_delete(override=override, actor=request.auth, via="api")
    return Status(204, None)


@router.get(f"{PREFIX}/decisions", response={200: list[DecisionOut], 400: ErrorOut, **ERRORS}, summary="Decisions")
def decisions_list(request, service: str | None = None, failed: bool = False, limit: int = Query(50, ge=1, le=1000)):
    """Newest first; `service` narrows to one service, `failed=true` to failures."""
    owner = _service_by_name(service) if service else None
    return list(decision_list(service=owner, limit=limit, failed_only=failed))
