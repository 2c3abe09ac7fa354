"""Monitoring API: targets, push ingestion, series search and history, current values, and the PromQL
sources rules may read."""

from __future__ import annotations

from datetime import timedelta

import pydantic
from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from ninja import Query, Router, Status
from ninja.errors import ValidationError as NinjaValidationError

from core.api import ERRORS, page_links, section_router
from core.errors import InvalidInput
from core.roles import OPERATOR, ensure_role
from core.schemas import ErrorOut
from monitoring.models import PromQLSource, Series, Target
from monitoring.schemas import (
    ConnectionTestOut,
    CurrentValueOut,
    ForecastOut,
    ForwardingOut,
    IngestIn,
    IngestOut,
    PromQLSourceIn,
    PromQLSourceOut,
    PromQLSourcePatchIn,
    QueryOut,
    SeriesOut,
    TargetIn,
    TargetKind,
    TargetOut,
    TargetPatchIn,
    TargetStatus,
)
from monitoring.selectors.targets import current_values, target_forecasts, target_list
from monitoring.services.ingest import IngestBatch, samples_ingest
from monitoring.services.promql_sources import (
    PromQLSourceInput,
    promql_source_create,
    promql_source_delete,
    promql_source_test,
    promql_source_update,
)
from monitoring.services.targets import (
    TargetInput,
    target_create,
    target_delete,
    target_test_connection,
    target_update,
)
from monitoring.timeranges import parse_time

router = Router(tags=["monitoring"])
router.add_router("/", section_router("monitoring"))
WRITE_ERRORS = {400: ErrorOut, **ERRORS}
MAX_QUERY_SERIES = 50
MAX_TARGETS_PAGE = 500


def _series_out(series: Series) -> dict:
    return {
        "id": series.id,
        "target": series.target.name if series.target_id else None,
        "metric": series.metric,
        "labels": series.labels,
        "kind": series.kind,
        "unit": series.unit,
    }


# --- targets ----------------------------------------------------------------------------------


# v1 answered a plain list before it paginated: it still does, so existing clients keep working, and
# the total and the neighbouring pages travel in headers (as GitHub's and Grafana's APIs do).
PAGE_HEADERS = {
    "X-Total-Count": {"description": "Targets matching the filters, on every page.", "schema": {"type": "integer"}},
    "Link": {
        "description": 'RFC 8288 links to the `next` and `prev` pages, when there are any: `<URL>; rel="next"`.',
        "schema": {"type": "string"},
    },
}


@router.get(
    "/targets",
    response=list[TargetOut],
    summary="List targets",
    openapi_extra={"responses": {200: {"headers": PAGE_HEADERS}}},
)
def targets_list(
    request,
    response: HttpResponse,
    q: str | None = Query(None, max_length=100, description="Only names containing this (any case)."),
    kind: TargetKind | None = None,
    status: TargetStatus | None = None,
    enabled: bool | None = None,
    pinned: bool | None = None,
    limit: int = Query(100, ge=1, le=MAX_TARGETS_PAGE, description="Targets per page."),
    offset: int = Query(0, ge=0, le=2**31 - 1, description="Targets to skip (built-in first, then by name)."),
):
    """One page of the targets matching every filter given; `X-Total-Count` says how many match in all."""
    targets = target_list(text=q, kind=kind, status=status, enabled=enabled, pinned=pinned)
    count = targets.count()
    response["X-Total-Count"] = str(count)
    links = page_links(request, count=count, limit=limit, offset=offset)
    if links:
        response["Link"] = links
    return list(targets[offset : offset + limit])


@router.post("/targets", response={201: TargetOut, **WRITE_ERRORS}, summary="Add a target")
def targets_create(request, payload: TargetIn):
    ensure_role(request.auth, OPERATOR)
    data = TargetInput(**payload.dict())
    return Status(201, target_create(data=data, actor=request.auth, via="api"))


@router.get("/targets/{int:target_id}", response={200: TargetOut, **ERRORS}, summary="One target")
def targets_get(request, target_id: int):
    return get_object_or_404(Target, pk=target_id)


@router.patch("/targets/{int:target_id}", response={200: TargetOut, **WRITE_ERRORS}, summary="Change a target")
def targets_patch(request, target_id: int, payload: TargetPatchIn):
    ensure_role(request.auth, OPERATOR)
    target = get_object_or_404(Target, pk=target_id)
    changes = payload.dict(exclude_unset=True)
    return target_update(target=target, changes=changes, actor=request.auth, via="api")


@router.delete("/targets/{int:target_id}", response={204: None, **ERRORS}, summary="Delete a target and its history")
def targets_delete(request, target_id: int):
    ensure_role(request.auth, OPERATOR)
    target_delete(target=get_object_or_404(Target, pk=target_id), actor=request.auth, via="api")
    return Status(204, None)


@router.post("/targets/{int:target_id}/test", response={200: ConnectionTestOut, **ERRORS}, summary="Test connection")
def targets_test(request, target_id: int):
    ensure_role(request.auth, OPERATOR)
    result = target_test_connection(target=get_object_or_404(Target, pk=target_id))
    return {"ok": result.ok, "detail": result.detail}


@router.get("/targets/{int:target_id}/forecasts", response={200: list[ForecastOut], **ERRORS}, summary="Forecasts")
def targets_forecasts(request, target_id: int, window_days: int = Query(7, ge=1, le=90)):
    target = get_object_or_404(Target, pk=target_id)
    return [
        {
            "series_id": s.id,
            "metric": s.metric,
            "labels": s.labels,
            "current": f.current,
            "limit": f.limit,
            "slope_per_day": f.slope_per_day,
            "days_to_limit": f.days_to_limit,
            "reaches_at": f.reaches_at,
            "r_squared": f.r_squared,
        }
        for s, f in target_forecasts(target=target, window=timedelta(days=window_days))
    ]


# --- metrics ----------------------------------------------------------------------------------


def _inline_schema(model: type[IngestIn]) -> dict:
    """The model's JSON schema with its $defs inlined, to stand on its own inside an operation."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def resolve(node):
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return resolve(defs[ref.removeprefix("#/$defs/")])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    return resolve(schema)


def _ingest_payload(request) -> IngestIn:
    """Parse and validate the body in one pass of pydantic's JSON parser.

    Declaring the body as a ninja parameter would parse the JSON into Python objects first and
    validate them second, which costs more than the COPY on a 10,000-sample body. Errors keep the
    shape (and the body/payload location prefix) of ninja's own 422s.
    """
    try:
        return IngestIn.model_validate_json(request.body)
    except pydantic.ValidationError as exc:
        errors = []
        for error in exc.errors(include_url=False):
            error.pop("input", None)
            if isinstance(error.get("ctx", {}).get("error"), Exception):
                error["ctx"]["error"] = str(error["ctx"]["error"])
            errors.append({**error, "loc": ["body", "payload", *error["loc"]]})
        raise NinjaValidationError(errors) from None


@router.post(
    "/metrics",
    response={202: IngestOut, **WRITE_ERRORS},
    summary="Push samples",
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": _inline_schema(IngestIn)}}}
    },
)
def metrics_ingest(request):
    """Batches of samples from external agents: up to 500,000 per request, timestamps in Unix seconds."""
    ensure_role(request.auth, OPERATOR)
    payload = _ingest_payload(request)
    target = None
    if payload.target is not None:
        target = Target.objects.filter(name=payload.target).first()
        if target is None:
            raise InvalidInput(f"No target named {payload.target!r}.", field="target")
    batches = [IngestBatch(s.metric, s.labels, s.kind.value, s.unit, s.points) for s in payload.series]
    result = samples_ingest(target=target, batches=batches)
    return Status(202, {"accepted": result.samples, "series": result.series})


@router.get("/metrics/series", response=list[SeriesOut], summary="Search series")
def metrics_series(
    request,
    target_id: int | None = None,
    q: str | None = Query(None, max_length=200),
    limit: int = Query(100, ge=1, le=1000),
):
    from monitoring.selectors.series import series_search

    return [_series_out(s) for s in series_search(target_id=target_id, text=q, limit=limit)]


@router.get("/metrics/query", response={200: QueryOut, 400: ErrorOut, **ERRORS}, summary="Series history")
def metrics_query(
    request,
    series: str,
    start: str = Query("-1h", alias="from"),
    end: str = Query("now", alias="to"),
    step: int | None = Query(None, ge=1, le=366 * 86_400, description="Seconds per point, at least."),
):
    """History of up to 50 series (comma-separated ids). Resolution is chosen so each series
    gets at most about 1,500 points; `step` (seconds) asks for a coarser one."""
    from monitoring.selectors.series import series_query

    try:
        ids = [int(part) for part in series.split(",") if part.strip()]
    except ValueError as exc:
        raise InvalidInput("series must be comma-separated series ids.", field="series") from exc
    if not 1 <= len(ids) <= MAX_QUERY_SERIES:
        raise InvalidInput(f"Ask for 1 to {MAX_QUERY_SERIES} series.", field="series")
    start_at, end_at = parse_time(start, "from"), parse_time(end, "to")
    if start_at >= end_at:
        raise InvalidInput("from must be before to.", field="from")
    max_points = 1500
    if step is not None:
        max_points = max(1, min(1500, int((end_at - start_at).total_seconds() // step)))
    known = {s.id: s for s in Series.objects.select_related("target").filter(id__in=ids)}
    missing = [i for i in ids if i not in known]
    if missing:
        raise InvalidInput(f"Unknown series: {', '.join(map(str, missing))}.", field="series")
    result = series_query(series_ids=ids, start=start_at, end=end_at, max_points=max_points)
    return {
        "resolution": result.resolution,
        "step_seconds": result.step_seconds,
        "series": [
            {**_series_out(known[i]), "points": [(p.ts, p.avg, p.min, p.max) for p in result.series.get(i, [])]}
            for i in ids
        ],
    }


@router.get("/performance/metrics", response=list[CurrentValueOut], summary="Current values")
def performance_metrics(request, target_id: int | None = None):
    target = get_object_or_404(Target, pk=target_id) if target_id is not None else None
    return [
        {
            "target": v.series.target.name if v.series.target_id else None,
            "target_status": v.series.target.status if v.series.target_id else None,
            "metric": v.series.metric,
            "labels": v.series.labels,
            "value": v.value,
            "at": v.at,
        }
        for v in current_values(target=target)
    ]


@router.get("/forwarding", response=ForwardingOut, summary="Remote-write forwarding status")
def forwarding(request):
    from monitoring.selectors.forwarding import forwarding_status

    return forwarding_status()


# --- PromQL sources -----------------------------------------------------------------------------


@router.get("/promql-sources", response=list[PromQLSourceOut], summary="List PromQL sources")
def promql_sources_list(request):
    """External Prometheus-compatible servers that PromQL rules may read instead of Perfpilot's store."""
    from monitoring.selectors.promql_sources import promql_source_list

    return list(promql_source_list())


@router.post("/promql-sources", response={201: PromQLSourceOut, **WRITE_ERRORS}, summary="Add a PromQL source")
def promql_sources_create(request, payload: PromQLSourceIn):
    ensure_role(request.auth, OPERATOR)
    data = PromQLSourceInput(**payload.dict())
    return Status(201, promql_source_create(data=data, actor=request.auth, via="api"))


@router.get("/promql-sources/{int:source_id}", response={200: PromQLSourceOut, **ERRORS}, summary="One PromQL source")
def promql_sources_get(request, source_id: int):
    return get_object_or_404(PromQLSource, pk=source_id)


@router.patch(
    "/promql-sources/{int:source_id}", response={200: PromQLSourceOut, **WRITE_ERRORS}, summary="Change a PromQL source"
)
def promql_sources_patch(request, source_id: int, payload: PromQLSourcePatchIn):
    ensure_role(request.auth, OPERATOR)
    source = get_object_or_404(PromQLSource, pk=source_id)
    changes = payload.dict(exclude_unset=True)
    return promql_source_update(source=source, changes=changes, actor=request.auth, via="api")


@router.delete(
    "/promql-sources/{int:source_id}", response={204: None, 409: ErrorOut, **ERRORS}, summary="Delete a PromQL source"
)
def promql_sources_delete(request, source_id: int):
    """Refused with 409 while rules read it."""
    ensure_role(request.auth, OPERATOR)
    promql_source_delete(source=get_object_or_404(PromQLSource, pk=source_id), actor=request.auth, via="api")
    return Status(204, None)


@router.post(
    "/promql-sources/{int:source_id}/test", response={200: ConnectionTestOut, **ERRORS}, summary="Test a PromQL source"
)
def promql_sources_test(request, source_id: int):
    """Runs `vector(1)` on the source now, with its token and timeout, through the outbound policy."""
    ensure_role(request.auth, OPERATOR)
    result = promql_source_test(source=get_object_or_404(PromQLSource, pk=source_id))
    return {"ok": result.ok, "detail": result.detail}
