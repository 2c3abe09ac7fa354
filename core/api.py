"""API endpoints of the control plane: status, the caller, API tokens and schedules."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from django_celery_beat.models import PeriodicTask
from ninja import Router, Status

from core.health import STATUS_API_MAX_AGE_SECONDS, control_plane_status
from core.models import ApiToken
from core.roles import ADMIN, OPERATOR, ensure_role, has_role, role_of
from core.schemas import (
    ApiTokenCreatedOut,
    ApiTokenIn,
    ApiTokenOut,
    ErrorOut,
    MeOut,
    ScheduleOut,
    SchedulePatchIn,
    ScheduleRunOut,
    SectionSummaryOut,
    StatusOut,
)
from core.selectors import api_token_list, section_summary
from core.services import (
    api_token_create,
    api_token_revoke,
    schedule_run_now,
    schedule_set_enabled,
)

router = Router(tags=["control plane"])
ERRORS = {401: ErrorOut, 403: ErrorOut, 404: ErrorOut}


@router.get("/performance/status", response=StatusOut, summary="Control-plane status")
def performance_status(request):
    """Version, uptime and the health of the database, Redis, the worker and beat.

    Checked at most once a second per web process; a poll within that second gets the same answer.
    """
    status = control_plane_status(max_age_seconds=STATUS_API_MAX_AGE_SECONDS)
    return {
        "version": status.version,
        "uptime_seconds": status.uptime_seconds,
        "healthy": status.healthy,
        "failed": status.failed,
        "components": {c.name: {"ok": c.ok, "detail": c.detail, "latency_ms": c.latency_ms} for c in status.checks},
    }


@router.get("/me", response=MeOut, summary="Who the caller is")
def me(request):
    return {"username": request.auth.get_username(), "role": role_of(request.auth)}


@router.get("/tokens", response=list[ApiTokenOut], summary="List your API tokens")
def tokens_list(request):
    return list(api_token_list(user=request.auth))


@router.post("/tokens", response={201: ApiTokenCreatedOut, 400: ErrorOut, **ERRORS}, summary="Create an API token")
def tokens_create(request, payload: ApiTokenIn):
    """The secret is in `token`, shown this once. It acts with your role."""
    issued = api_token_create(user=request.auth, name=payload.name, via="api")
    token = issued.token
    return Status(
        201,
        {
            "id": token.id,
            "name": token.name,
            "prefix": token.prefix,
            "created_at": token.created_at,
            "last_used_at": token.last_used_at,
            "revoked_at": token.revoked_at,
            "token": issued.raw,
        },
    )


@router.delete("/tokens/{int:token_id}", response={200: ApiTokenOut, **ERRORS}, summary="Revoke an API token")
def tokens_revoke(request, token_id: int):
    """Your own tokens; admins may revoke anyone's."""
    tokens = ApiToken.objects.all() if has_role(request.auth, ADMIN) else ApiToken.objects.filter(user=request.auth)
    token = get_object_or_404(tokens, pk=token_id)
    return api_token_revoke(token=token, actor=request.auth, via="api")


def schedule_out(task: PeriodicTask) -> dict:
    return {
        "id": task.id,
        "name": task.name,
        "task": task.task,
        "enabled": task.enabled,
        "schedule": str(task.scheduler) if task.scheduler else "",
        "last_run_at": task.last_run_at,
        "total_run_count": task.total_run_count,
    }


def page_links(request, *, count: int, limit: int, offset: int) -> str:
    """RFC 8288 `Link` header value for the pages next to this one (empty when there are none)."""
    links = []
    if offset + limit < count:
        links.append((offset + limit, "next"))
    if offset > 0:
        links.append((max(offset - limit, 0), "prev"))
    values = []
    for page_offset, rel in links:
        query = request.GET.copy()
        query["offset"] = str(page_offset)
        query["limit"] = str(limit)
        values.append(f'<{request.build_absolute_uri(request.path)}?{query.urlencode()}>; rel="{rel}"')
    return ", ".join(values)


def section_router(section: str) -> Router:
    """The router of a product app: its section summary, as its page shows it."""
    section_api = Router(tags=[section])

    @section_api.get(
        f"/{section}/summary",
        response=SectionSummaryOut,
        summary=f"{section.capitalize()}: queue and schedules",
        operation_id=f"{section}_summary",  # one function serves every section: name each operation
    )
    def summary(request):
        data = section_summary(section=section)
        return {**data, "schedules": [schedule_out(task) for task in data["schedules"]]}

    return section_api


@router.get("/schedules", response=list[ScheduleOut], summary="List periodic task schedules")
def schedules_list(request):
    tasks = PeriodicTask.objects.exclude(task="celery.backend_cleanup").select_related(
        "interval", "crontab", "clocked", "solar"
    )
    return [schedule_out(task) for task in tasks.order_by("name")]


@router.patch("/schedules/{int:schedule_id}", response={200: ScheduleOut, **ERRORS}, summary="Enable or disable")
def schedules_patch(request, schedule_id: int, payload: SchedulePatchIn):
    ensure_role(request.auth, OPERATOR)
    task = get_object_or_404(PeriodicTask, pk=schedule_id)
    return schedule_out(
        schedule_set_enabled(periodic_task=task, enabled=payload.enabled, actor=request.auth, via="api")
    )


@router.post("/schedules/{int:schedule_id}/run", response={202: ScheduleRunOut, **ERRORS}, summary="Run a schedule now")
def schedules_run(request, schedule_id: int):
    ensure_role(request.auth, OPERATOR)
    task = get_object_or_404(PeriodicTask, pk=schedule_id)
    task_id = schedule_run_now(periodic_task=task, actor=request.auth, via="api")
    return Status(202, {"task_id": task_id})
