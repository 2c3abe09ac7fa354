"""Optimizer API: recommendations, the optimization log, running tuners, database and cache reports,
and a latency benchmark. Paths carry their own /performance prefix; mounted at /api/v1."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict

from django.conf import settings
from django.db.models import Q
from django.http import Http404
from django.shortcuts import get_object_or_404
from ninja import Path, Query, Router, Status

from core.api import ERRORS, section_router
from core.errors import InvalidInput
from core.roles import OPERATOR, ensure_role, has_role
from core.schemas import ErrorOut
from monitoring.models import Target
from optimizer.activity_selectors import activity_read
from optimizer.explain_selectors import explain_run_get
from optimizer.models import OptimizationRun, Recommendation
from optimizer.plan_selectors import plan_regression_get, plan_regression_list
from optimizer.query_history_selectors import DEFAULT_RANGE, HISTORY_RANGES, query_history
from optimizer.schemas import (
    ActivityOut,
    BackendSignalIn,
    BackendSignalOut,
    BenchmarkIn,
    BenchmarkOut,
    CacheReportOut,
    DatabaseReportOut,
    ExplainAnalyzeIn,
    ExplainIn,
    ExplainOut,
    ExplainRunOut,
    OptimizationExecuteIn,
    OptimizeIn,
    PlanRegressionDetailOut,
    PlanRegressionOut,
    QueryHistoryOut,
    RecommendationOut,
    ReportOut,
    RunOut,
    SpaceOut,
    SpeedupsOut,
)
from optimizer.selectors import (
    cache_report,
    database_report,
    postgres_targets,
    recommendation_list,
    run_list,
    space_report,
    tuner_overview,
)
from optimizer.services.activity import backend_signal
from optimizer.services.benchmark import benchmark_run
from optimizer.services.explain import explain, explain_analyze_cancel, explain_analyze_start, query_text_for
from optimizer.services.runs import recommendation_apply_start, recommendation_dismiss, runs_start
from optimizer.speedup_selectors import speedup_list
from optimizer.tuners.base import all_tuners

router = Router(tags=["optimizer"])
router.add_router("/", section_router("optimizer"))
WRITE_ERRORS = {400: ErrorOut, 409: ErrorOut, **ERRORS}
MAX_LIMIT = 500


def _targets(refs: list[int | str]) -> list[Target]:
    found = []
    for ref in refs:
        lookup = Q(pk=ref) if isinstance(ref, int) else Q(name=ref)
        target = Target.objects.filter(lookup).first()
        if target is None:
            raise InvalidInput(f"No target {ref!r}.", field="targets")
        found.append(target)
    return found


def _target(ref: str | None, *, kind: str) -> Target:
    targets = Target.objects.filter(kind=kind)
    if ref is None:
        target = targets.order_by("name").first()
        if target is None:
            raise InvalidInput(f"There is no {kind} target yet.", field="target")
        return target
    target = targets.filter(Q(name=ref) | Q(pk=int(ref)) if ref.isdigit() else Q(name=ref)).first()
    if target is None:
        raise InvalidInput(f"No {kind} target {ref!r}.", field="target")
    return target


def _trigger_api(request) -> dict:
    return {"actor": request.auth, "trigger": OptimizationRun.Trigger.API}


# --- recommendations ------------------------------------------------------------------------


@router.get(
    "/performance/recommendations",
    response={200: list[RecommendationOut], **WRITE_ERRORS},
    summary="Recommendations, highest priority first",
)
def recommendations(
    request,
    status: str = "open",
    target: int | None = None,
    category: str | None = None,
    limit: int = Query(100, ge=1, le=MAX_LIMIT),
):
    return list(recommendation_list(status=status or None, target_id=target, category=category)[:limit])


@router.post(
    "/performance/recommendations/{recommendation_id}/apply",
    response={202: RunOut, **WRITE_ERRORS},
    summary="Apply a recommendation (as a task; follow the returned run)",
)
def recommendations_apply(request, recommendation_id: int, dry_run: bool = False):
    """`?dry_run=true` records what would run and changes nothing."""
    ensure_role(request.auth, OPERATOR)
    recommendation = get_object_or_404(Recommendation, pk=recommendation_id)
    return Status(
        202, recommendation_apply_start(recommendation=recommendation, dry_run=dry_run, **_trigger_api(request))
    )


@router.post(
    "/performance/recommendations/{recommendation_id}/dismiss",
    response={200: RecommendationOut, **WRITE_ERRORS},
    summary="Dismiss a recommendation",
)
def recommendations_dismiss(request, recommendation_id: int):
    ensure_role(request.auth, OPERATOR)
    recommendation = get_object_or_404(Recommendation.objects.select_related("target"), pk=recommendation_id)
    return recommendation_dismiss(recommendation=recommendation, actor=request.auth, via="api")


# --- optimization log and runs --------------------------------------------------------------


@router.get(
    "/performance/optimization/report",
    response={200: ReportOut, **WRITE_ERRORS},
    summary="The optimization log (searchable) and the tuners",
)
def optimization_report(
    request,
    q: str = "",
    target: int | None = None,
    tuner: str | None = None,
    status: str | None = None,
    limit: int = Query(50, ge=1, le=MAX_LIMIT),
):
    runs = run_list(search=q, target_id=target, tuner=tuner, status=status)
    statuses = Counter(runs.values_list("status", flat=True))
    return {
        "runs": list(runs[:limit]),
        "count": sum(statuses.values()),
        "by_status": dict(statuses),
        "tuners": [
            {
                "kind": row.kind,
                "label": row.label,
                "description": row.description,
                "target_kinds": list(row.target_kinds),
                "schedules": [f"{s.name}: {s.scheduler}" for s in row.schedules],
                "last_run_id": row.last_run.id if row.last_run else None,
                "last_run_status": row.last_run.status if row.last_run else None,
                "last_run_at": row.last_run.created_at if row.last_run else None,
            }
            for row in tuner_overview()
        ],
    }


@router.post(
    "/performance/optimization/execute",
    response={202: list[RunOut], **WRITE_ERRORS},
    summary="Run tuners on targets now (as tasks)",
)
def optimization_execute(request, payload: OptimizationExecuteIn):
    ensure_role(request.auth, OPERATOR)
    runs = runs_start(
        tuners=payload.tuners,
        targets=_targets(payload.targets),
        dry_run=payload.dry_run,
        params=payload.params,
        **_trigger_api(request),
    )
    return Status(202, runs)


def _tuners_for(kind: str, asked: list[str] | None) -> list[str]:
    fitting = [k for k, cls in sorted(all_tuners().items()) if kind in cls.target_kinds]
    if asked is None:
        return fitting
    for name in asked:
        if name not in fitting:
            raise InvalidInput(f"{name!r} is not a {kind} tuner; choose from {', '.join(fitting)}.", field="tuners")
    return asked


def _optimize(request, payload: OptimizeIn, kind: str):
    ensure_role(request.auth, OPERATOR)
    targets = _targets(payload.targets)
    for target in targets:
        if target.kind != kind:
            raise InvalidInput(f"{target.name} is not a {kind} target.", field="targets")
    runs = runs_start(
        tuners=_tuners_for(kind, payload.tuners),
        targets=targets,
        dry_run=payload.dry_run,
        params=payload.params,
        **_trigger_api(request),
    )
    return Status(202, runs)


# --- database and cache ---------------------------------------------------------------------


def _report_out(report) -> dict:
    return {
        "target_id": report.target.id,
        "target": report.target.name,
        "last_runs": report.last_runs,
    }


@router.get(
    "/performance/database/report",
    response={200: DatabaseReportOut, **WRITE_ERRORS},
    summary="A PostgreSQL target: slow queries, index, vacuum and config advice",
)
def database_report_get(request, target: str | None = None):
    # Reading the target live is an outbound connection: operators only; viewers get the stored findings.
    live = has_role(request.auth, OPERATOR)
    report = database_report(target=_target(target, kind=Target.Kind.POSTGRES), live=live)
    return {
        **_report_out(report),
        "error": report.error,
        "slow_queries": report.slow_queries,
        "vacuum_status": report.vacuum_status,
        **report.sections,
    }


@router.post(
    "/performance/database/optimize",
    response={202: list[RunOut], **WRITE_ERRORS},
    summary="Run the PostgreSQL tuners on targets (as tasks)",
)
def database_optimize(request, payload: OptimizeIn):
    return _optimize(request, payload, Target.Kind.POSTGRES)


@router.get(
    "/performance/database/space",
    response={200: SpaceOut, **WRITE_ERRORS},
    summary="A PostgreSQL target's table and index sizes: growth per day, forecast, bloat (stored daily readings)",
)
def database_space(
    request,
    target: str | None = None,
    limit: int = Query(20, ge=1, le=MAX_LIMIT, description="The largest relations, tables and indexes together."),
    days: int = Query(30, ge=2, le=400, description="Days of readings the growth is fitted over."),
    until_bytes: int | None = Query(None, ge=1, description="A total size to give the days until."),
):
    """From the space tuner's daily readings (connects to nothing): the largest relations of the newest one."""
    report = space_report(
        target=_target(target, kind=Target.Kind.POSTGRES), limit=limit, days=days, until_bytes=until_bytes
    )
    return {
        "target_id": report.target.id,
        "target": report.target.name,
        "day": report.day,
        "total_bytes": report.total_bytes,
        "total_growth_per_day": report.total_growth_per_day,
        "total_in_30_days": report.total_in_30_days,
        "until_bytes": report.until_bytes,
        "days_until": report.days_until,
        "totals": [{"day": day, "bytes": size} for day, size in report.totals],
        "relations": [
            {**asdict(r), "schema_name": r.schema, "bloat_percent": r.bloat_percent} for r in report.relations
        ],
    }


@router.get(
    "/performance/database/activity",
    response={200: ActivityOut, **WRITE_ERRORS},
    summary="A PostgreSQL target's live activity: running queries, idle transactions, locks, blocking tree",
)
def database_activity(request, target: str | None = None):
    """Read from the target now, for operators; viewers get an empty answer whose `error` says why."""
    activity = activity_read(target=_target(target, kind=Target.Kind.POSTGRES), live=has_role(request.auth, OPERATOR))
    return {
        "target_id": activity.target.id,
        "target": activity.target.name,
        "error": activity.error,
        "read_at": activity.read_at,
        "allow_terminate": settings.OPTIMIZER_ALLOW_TERMINATE,
        "running": activity.running,
        "idle_in_transaction": activity.idle_in_transaction,
        "blocking": activity.blocking,
        "locks": activity.locks,
    }


def _signal(request, payload: BackendSignalIn, action: str):
    ensure_role(request.auth, OPERATOR)
    return backend_signal(
        target=_targets([payload.target])[0],
        action=action,
        pid=payload.pid,
        backend_start=payload.backend_start,
        query_start=payload.query_start,
        actor=request.auth,
        via="api",
    )


SIGNAL_ERRORS = {**WRITE_ERRORS, 503: ErrorOut}


@router.post(
    "/performance/database/activity/cancel",
    response={200: BackendSignalOut, **SIGNAL_ERRORS},
    summary="Cancel a backend's query (pg_cancel_backend), if it still runs the query shown",
)
def database_activity_cancel(request, payload: BackendSignalIn):
    """409 when the pid is not a client backend of the target's database, or no longer the session (backend_start)
    or the query (query_start) the activity list showed; 503 when the target cannot be reached."""
    return _signal(request, payload, "cancel")


@router.post(
    "/performance/database/activity/terminate",
    response={200: BackendSignalOut, **SIGNAL_ERRORS},
    summary="Terminate a backend (pg_terminate_backend), if it still runs the query shown",
)
def database_activity_terminate(request, payload: BackendSignalIn):
    """403 when PERFPILOT_ALLOW_TERMINATE is off; otherwise the same refusals as cancel."""
    return _signal(request, payload, "terminate")


@router.get(
    "/performance/database/plan-regressions",
    response={200: list[PlanRegressionOut], **WRITE_ERRORS},
    summary="A PostgreSQL target's plan regressions: queries whose plan changed and got slower, newest first",
)
def database_plan_regressions(request, target: str | None = None, limit: int = Query(50, ge=1, le=MAX_LIMIT)):
    return plan_regression_list(target=_target(target, kind=Target.Kind.POSTGRES), limit=limit)


@router.get(
    "/performance/database/plan-regressions/{int:regression_id}",
    response={200: PlanRegressionDetailOut, **ERRORS},
    summary="A plan regression with both plans (before and after the change)",
)
def database_plan_regression(request, regression_id: int):
    return plan_regression_get(regression_id=regression_id)


@router.get(
    "/performance/cache/report",
    response={200: CacheReportOut, **WRITE_ERRORS},
    summary="A Redis target: memory by namespace, TTLs, idle, hot and cold keys, compressible values, advice",
)
def cache_report_get(request, target: str | None = None):
    report = cache_report(target=_target(target, kind=Target.Kind.REDIS))
    return {
        **_report_out(report),
        "analysis": report.analysis,
        "key_access": report.key_access,
        "compression": report.compression,
        "recommendations": report.recommendations,
    }


@router.post(
    "/performance/cache/optimize",
    response={202: list[RunOut], **WRITE_ERRORS},
    summary="Run the Redis cache tuner on targets (as tasks)",
)
def cache_optimize(request, payload: OptimizeIn):
    return _optimize(request, payload, Target.Kind.REDIS)


@router.post(
    "/performance/benchmark",
    response={200: BenchmarkOut, **WRITE_ERRORS},
    summary="Run a short read/write latency benchmark on a target and record it",
)
def benchmark(request, payload: BenchmarkIn):
    """Connects to the target and writes to it: a POST, for operators."""
    ensure_role(request.auth, OPERATOR)
    found = _targets([payload.target])[0]
    run = benchmark_run(target=found, operations=payload.operations, **_trigger_api(request))
    if run.status != OptimizationRun.Status.SUCCEEDED:
        raise InvalidInput(f"The benchmark on {found.name} failed: {run.error}", field="target")
    return {"run_id": run.id, "target": found.name, **run.evidence_after}


@router.get(
    "/performance/benchmark",
    response={200: list[RunOut], 400: ErrorOut, **ERRORS},
    summary="The latest recorded benchmarks (reads the log; connects to nothing)",
)
def benchmark_list(request, limit: int = 20):
    if not 1 <= limit <= 200:
        raise InvalidInput("limit must be between 1 and 200.", field="limit")
    return list(run_list(action=OptimizationRun.Action.BENCHMARK)[:limit])


# --- EXPLAIN -----------------------------------------------------------------------------------


def _explain_query(payload, target: Target) -> tuple[str, int | None]:
    if (payload.query is None) == (payload.queryid is None):
        raise InvalidInput("Give either query or queryid.", field="query")
    if payload.query is not None:
        return payload.query, None
    return query_text_for(target=target, queryid=payload.queryid), payload.queryid


@router.post(
    "/performance/database/explain",
    response={200: ExplainOut, 502: ErrorOut, **WRITE_ERRORS},
    summary="EXPLAIN a query on a PostgreSQL target (plain, or the generic plan of normalized text)",
)
def database_explain(request, payload: ExplainIn):
    """Never runs the query. Connects to the target, so operators only; 502 when the target cannot be asked."""
    ensure_role(request.auth, OPERATOR)
    target = _targets([payload.target])[0]
    query, _ = _explain_query(payload, target)
    result = explain(target=target, query=query, mode=payload.mode, actor=request.auth, via="api")
    return {
        "target_id": target.id,
        "target": target.name,
        "mode": result.mode,
        "method": result.method,
        "query": result.query,
        "server_version": result.server_version,
        "plan": result.plan,
        "nodes": result.tree.nodes,
        "worst_node": result.tree.worst.index if result.tree.worst else None,
        "planning_time_ms": result.tree.planning_time_ms,
    }


@router.post(
    "/performance/database/explain/runs",
    response={202: ExplainRunOut, 409: ExplainRunOut, **{k: v for k, v in WRITE_ERRORS.items() if k != 409}},
    summary="Start EXPLAIN ANALYZE (as a task, always rolled back; follow the returned run)",
)
def database_explain_analyze(request, payload: ExplainAnalyzeIn):
    """One run per (target, query) at a time: while one is live, the answer is 409 with that run."""
    ensure_role(request.auth, OPERATOR)
    target = _targets([payload.target])[0]
    query, queryid = _explain_query(payload, target)
    run, created = explain_analyze_start(
        target=target,
        query=query,
        queryid=queryid,
        statement_timeout_seconds=payload.statement_timeout_seconds,
        actor=request.auth,
        via="api",
    )
    return Status(202 if created else 409, run)


@router.get(
    "/performance/database/explain/runs/{int:run_id}",
    response={200: ExplainRunOut, **ERRORS},
    summary="An EXPLAIN ANALYZE run: its status and, once done, the plan",
)
def database_explain_run(request, run_id: int):
    return explain_run_get(run_id=run_id)


@router.post(
    "/performance/database/explain/runs/{int:run_id}/cancel",
    response={200: ExplainRunOut, **WRITE_ERRORS},
    summary="Cancel a live EXPLAIN ANALYZE run (pg_cancel_backend of its backend)",
)
def database_explain_cancel(request, run_id: int):
    """409 when the run is over already."""
    ensure_role(request.auth, OPERATOR)
    run = explain_analyze_cancel(run=explain_run_get(run_id=run_id), actor=request.auth, via="api")
    return run


# --- query history and speed-ups ----------------------------------------------------------------


@router.get(
    "/performance/database/{int:target_id}/queries/{queryid}/history",
    response={200: QueryHistoryOut, 400: ErrorOut, **ERRORS},
    summary="One query of a PostgreSQL target over time: calls, mean and total time, rows, blocks; applies marked",
)
def database_query_history(
    request,
    target_id: int,
    queryid: int = Path(..., ge=-(2**63), le=2**63 - 1, description="The pg_stat_statements query id (signed)."),
    range: str = Query(DEFAULT_RANGE, description=f"One of {', '.join(HISTORY_RANGES)}."),
):
    """Sums of monitoring's snapshot deltas per bucket, sized from the range (about 100 buckets at most, never finer
    than the target's interval). 400 naming `range` for another range; 404 for an unknown target or query."""
    target = get_object_or_404(postgres_targets(), pk=target_id)
    history = query_history(target=target, queryid=queryid, range_label=range)
    if history is None:
        raise Http404(f"No query {queryid} recorded for {target.name}.")
    return {
        "target_id": target.id,
        "target": target.name,
        "queryid": history.queryid,
        "query": history.query,
        "database": history.database,
        "range": history.range_label,
        "start": history.start,
        "end": history.end,
        "bucket_seconds": int(history.bucket.total_seconds()),
        "buckets": history.buckets,
        "totals": history.totals,
        "markers": history.markers,
    }


@router.get(
    "/performance/database/{int:target_id}/speedups",
    response={200: SpeedupsOut, **ERRORS},
    summary="Index advice applied on a PostgreSQL target and the speed-up observed afterwards",
)
def database_speedups(request, target_id: int, limit: int = Query(20, ge=1, le=MAX_LIMIT)):
    """Newest first: each applied index with the mean time of the queries it served before and after
    (`status` observed), `waiting` for their calls, or `not_observed` when none came within 24 hours."""
    target = get_object_or_404(postgres_targets(), pk=target_id)
    return {"target_id": target.id, "target": target.name, "speedups": speedup_list(target=target, limit=limit)}
