"""Optimizer pages: recommendations and tuners, a run's live status, the optimization log, and the
Database and Cache pages per target. One URL serves each page and its HTMX fragments."""

from __future__ import annotations

import json

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_celery_beat.models import PeriodicTask
from django_htmx.http import HttpResponseStopPolling

from core.errors import InvalidInput
from core.htmx import render_page, requested_fragment
from core.queueing import QueueUnavailable
from core.roles import OPERATOR, ensure_role, has_role, role_required
from core.views import section_context
from monitoring.models import Target
from optimizer.activity_selectors import activity_read
from optimizer.charts import before_after_json, space_json
from optimizer.converters import queryid_parse
from optimizer.evidence import evidence_table
from optimizer.explain_selectors import explain_run_activity, explain_run_get, explain_runs_recent
from optimizer.models import OptimizationRun, Recommendation
from optimizer.plan_selectors import plan_regression_get, plan_regression_list
from optimizer.plans import plan_tree
from optimizer.query_history_charts import query_history_json
from optimizer.query_history_selectors import DEFAULT_RANGE, HISTORY_RANGES, query_history
from optimizer.selectors import (
    cache_report,
    database_report,
    postgres_targets,
    recommendation_list,
    redis_targets,
    run_list,
    run_progress,
    tuner_overview,
)
from optimizer.services.activity import backend_signal
from optimizer.services.explain import explain, explain_analyze_cancel, explain_analyze_start, query_text_for
from optimizer.services.runs import recommendation_apply_start, recommendation_dismiss, runs_start
from optimizer.services.schedules import tuner_schedule_update
from optimizer.tuners.base import all_tuners

LOG_PAGE_SIZE = 100


def _run_status(request: HttpRequest, run: OptimizationRun) -> HttpResponse:
    """The live status fragment of a run; polling stops (HTTP 286) once the run is over."""
    context = {"run": run, "progress": run_progress(run=run, live=has_role(request.user, OPERATOR))}
    response = render(request, "optimizer/run.html#status", context)
    if not run.is_live:
        return HttpResponseStopPolling(response.content)
    return response


def _queue_unavailable(request: HttpRequest, exc: QueueUnavailable) -> HttpResponse:
    """Nothing was queued (and nothing left pending): say so where the button was, or on the page."""
    if request.htmx:  # the header lets static/js/perfpilot.js swap this 503 in where the button was
        response = render(request, "optimizer/_error.html", {"message": str(exc)}, status=503)
        response["X-Perfpilot-Fragment"] = "error"
        return response
    messages.error(request, str(exc))
    return redirect("optimizer:index")


def _tuners_context(**extra) -> dict:
    # Each tuner's Run now takes a target by name (a search), not a select of every target.
    return {"tuners": tuner_overview(), **extra}


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    context = {
        **section_context("optimizer"),
        **_tuners_context(),
        "recommendations": list(recommendation_list(status="open")[:100]),
        "recent_runs": list(run_list()[:8]),
    }
    return render(request, "optimizer/index.html", context)


@require_POST
@role_required(OPERATOR)
def schedule_edit(request: HttpRequest, schedule_id: int) -> HttpResponse:
    task = get_object_or_404(PeriodicTask, pk=schedule_id, task__startswith="optimizer.tasks.")
    try:
        tuner_schedule_update(
            periodic_task=task,
            crontab=request.POST.get("crontab", ""),
            maintenance_window=request.POST.get("maintenance_window", ""),
            dry_run=request.POST.get("dry_run") == "on",
            actor=request.user,
            via="ui",
        )
    except InvalidInput as exc:
        context = _tuners_context(schedule_errors={task.id: str(exc)})
        return render(request, "optimizer/index.html#tuners", context, status=422)
    if request.htmx:
        return render(request, "optimizer/index.html#tuners", _tuners_context(saved=task.id))
    messages.success(request, f"Schedule “{task.name}” saved.")
    return redirect("optimizer:index")


@require_POST
@role_required(OPERATOR)
def recommendation_apply(request: HttpRequest, recommendation_id: int) -> HttpResponse:
    recommendation = get_object_or_404(Recommendation, pk=recommendation_id)
    try:
        run = recommendation_apply_start(
            recommendation=recommendation,
            actor=request.user,
            trigger=OptimizationRun.Trigger.OPERATOR,
            dry_run=request.POST.get("dry_run") == "on",
        )
    except InvalidInput as exc:
        return render(request, "optimizer/_error.html", {"message": str(exc)}, status=422)
    except QueueUnavailable as exc:
        return _queue_unavailable(request, exc)
    if request.htmx:
        return _run_status(request, run)
    return redirect("optimizer:run", run_id=run.id)


@require_POST
@role_required(OPERATOR)
def recommendation_dismiss_view(request: HttpRequest, recommendation_id: int) -> HttpResponse:
    recommendation = get_object_or_404(Recommendation.objects.select_related("target"), pk=recommendation_id)
    try:
        recommendation_dismiss(recommendation=recommendation, actor=request.user, via="ui")
    except InvalidInput as exc:
        return render(request, "optimizer/_error.html", {"message": str(exc)}, status=422)
    if request.htmx:  # the row becomes a line saying what happened
        return render(request, "optimizer/_dismissed.html", {"recommendation": recommendation})
    messages.success(request, f"Dismissed “{recommendation.title}”: tuners finding it again will not reopen it.")
    return redirect("optimizer:index")


def _posted_target(value: str) -> Target | None:
    """The target a form names: by name (the search input), else by id (a form posting one)."""
    value = value.strip()
    found = Target.objects.filter(name=value).first() if value and "\x00" not in value else None
    if found is None and value.isascii() and value.isdigit() and len(value) <= 18:
        found = Target.objects.filter(pk=int(value)).first()
    return found


@require_POST
@role_required(OPERATOR)
def tuner_run(request: HttpRequest, kind: str) -> HttpResponse:
    target = _posted_target(request.POST.get("target", ""))
    try:
        if target is None:
            raise InvalidInput("Choose a target.", field="target")
        runs = runs_start(
            tuners=[kind],
            targets=[target],
            dry_run=request.POST.get("dry_run") == "on",
            actor=request.user,
            trigger=OptimizationRun.Trigger.OPERATOR,
            params={"maintenance_window": request.POST["window"]} if request.POST.get("window") else None,
        )
    except InvalidInput as exc:
        return render(request, "optimizer/_error.html", {"message": str(exc)}, status=422)
    except QueueUnavailable as exc:
        return _queue_unavailable(request, exc)
    if request.htmx:
        return _run_status(request, runs[0])
    return redirect("optimizer:run", run_id=runs[0].id)


@require_GET
def run_detail(request: HttpRequest, run_id: int) -> HttpResponse:
    run = get_object_or_404(OptimizationRun.objects.select_related("recommendation", "target"), pk=run_id)
    if requested_fragment(request, "status"):
        return _run_status(request, run)
    context = {
        "run": run,
        "progress": run_progress(run=run, live=has_role(request.user, OPERATOR)),
        "figure_json": before_after_json(run),
        "evidence": evidence_table(run),
    }
    return render(request, "optimizer/run.html", context)


@require_GET
def log(request: HttpRequest) -> HttpResponse:
    search = request.GET.get("q", "").strip()
    status = request.GET.get("status") or None
    tuner = request.GET.get("tuner") or None
    try:
        runs = run_list(search=search, status=status, tuner=tuner)
    except InvalidInput as exc:
        messages.error(request, str(exc))
        runs = run_list(search=search)
    context = {
        "runs": list(runs[:LOG_PAGE_SIZE]),
        "count": runs.count(),
        "q": search,
        "status": status or "",
        "tuner": tuner or "",
        "statuses": OptimizationRun.Status.choices,
        "tuner_kinds": [*sorted(all_tuners()), "benchmark"],
        "page_size": LOG_PAGE_SIZE,
    }
    return render(request, "optimizer/log.html", context)


# The database and cache pages show this many targets as chips (built-in and pinned first, and the one
# shown); with more, a name search opens any other.
PICKER_CHIPS = 12


def _chosen(request: HttpRequest, targets, target_id: int | None) -> Target | None:
    if target_id is not None:
        return get_object_or_404(targets, pk=target_id)
    name = request.GET.get("target", "").strip()
    if name:
        if "\x00" in name:  # PostgreSQL text cannot hold NUL, so no name has one (the query would fail)
            raise Http404("No target by that name.")
        return get_object_or_404(targets, name=name)
    return targets.first()


def _picker(targets, target: Target | None, *, kind: str) -> dict:
    shown = list(targets.order_by("-builtin", "-pinned", "name")[:PICKER_CHIPS])
    if target is not None and target not in shown:
        shown.append(target)
    return {"targets": shown, "targets_total": targets.count(), "target": target, "kinds": [kind]}


@require_GET
def database(request: HttpRequest, target_id: int | None = None) -> HttpResponse:
    targets = postgres_targets()
    target = _chosen(request, targets, target_id)
    live = has_role(request.user, OPERATOR)  # reading the target live connects out: operators only
    report = database_report(target=target, live=live) if target else None
    regressions = list(plan_regression_list(target=target, limit=10)) if target else []
    context = {**_picker(targets, target, kind=Target.Kind.POSTGRES), "report": report, "regressions": regressions}
    if report is not None:
        context["space_figure_json"] = space_json(report.space)
    return render(request, "optimizer/database.html", context)


@require_GET
def plan_regression_view(request: HttpRequest, regression_id: int) -> HttpResponse:
    """One plan regression: the plan before and after the change side by side (stacked on phones)."""
    regression = plan_regression_get(regression_id=regression_id)
    plans = [
        {
            "label": label,
            "capture": capture,
            "tree": plan_tree(capture.plan),
            "plan_json": json.dumps(capture.plan, indent=2),
        }
        for label, capture in (("Before", regression.before), ("After", regression.after))
    ]
    return render(request, "optimizer/plan_regression.html", {"regression": regression, "plans": plans})


@require_GET
def cache(request: HttpRequest, target_id: int | None = None) -> HttpResponse:
    targets = redis_targets()
    target = _chosen(request, targets, target_id)
    report = cache_report(target=target) if target else None
    return render(
        request, "optimizer/cache.html", {**_picker(targets, target, kind=Target.Kind.REDIS), "report": report}
    )


@require_GET
def activity(request: HttpRequest, target_id: int) -> HttpResponse:
    """Live activity of a PostgreSQL target; HTMX polls its `activity` fragment while the tab is visible."""
    target = get_object_or_404(postgres_targets(), pk=target_id)
    live = has_role(request.user, OPERATOR)  # reading the target live connects out: operators only
    context = {
        "target": target,
        "live": live,
        "activity": activity_read(target=target, live=live),
        "allow_terminate": settings.OPTIMIZER_ALLOW_TERMINATE,
    }
    return render_page(request, "optimizer/activity.html", context, fragment=requested_fragment(request, "activity"))


@require_GET
def query_history_view(request: HttpRequest, target_id: int, queryid: int) -> HttpResponse:
    """One query of a PostgreSQL target over time: calls, mean time, rows and blocks, the applies marked."""
    target = get_object_or_404(postgres_targets(), pk=target_id)
    range_label = request.GET.get("range", DEFAULT_RANGE)
    history = query_history(
        target=target, queryid=queryid, range_label=range_label if range_label in HISTORY_RANGES else DEFAULT_RANGE
    )
    if history is None:
        raise Http404("No such query recorded for this target.")
    context = {
        "target": target,
        "history": history,
        "ranges": list(HISTORY_RANGES),
        "figures": query_history_json(history),
    }
    return render(request, "optimizer/query_history.html", context)


def _shown_time(request: HttpRequest, name: str, *, required: bool):
    raw = request.POST.get(name, "")
    if not raw and not required:
        return None
    try:
        value = parse_datetime(raw)
    except ValueError:
        value = None
    if value is None:
        raise InvalidInput(f"{name} must be the ISO 8601 time the page showed.", field=name)
    return value


# --- EXPLAIN -----------------------------------------------------------------------------------


def _explain_context(target: Target, **extra) -> dict:
    return {
        "target": target,
        "recent_runs": list(explain_runs_recent(target=target)),
        "analyze_timeout": settings.EXPLAIN_ANALYZE_TIMEOUT_SECONDS,
        **extra,
    }


@require_http_methods(["GET", "POST"])
def explain_view(request: HttpRequest, target_id: int) -> HttpResponse:
    """GET: the form (prefilled from ?queryid= of a slow query). POST (operators): EXPLAIN at once,
    or start EXPLAIN ANALYZE and go to its run (the running one, when this query already runs)."""
    target = get_object_or_404(postgres_targets(), pk=target_id)
    queryid = request.GET.get("queryid") or request.POST.get("queryid") or ""
    query = request.POST.get("query", "")
    try:
        if request.method == "GET" and queryid_parse(queryid) is not None:
            query = query_text_for(target=target, queryid=queryid_parse(queryid))
    except InvalidInput as exc:
        messages.error(request, str(exc))
    if request.method == "GET":
        return render(request, "optimizer/explain.html", _explain_context(target, query=query, queryid=queryid))
    ensure_role(request.user, OPERATOR)
    mode = request.POST.get("mode", "auto")
    context = _explain_context(target, query=query, queryid=queryid, mode=mode)
    try:
        if mode == "analyze":
            timeout = request.POST.get("statement_timeout_seconds") or None
            try:
                timeout = float(timeout) if timeout is not None else None
            except ValueError:
                raise InvalidInput("Give the timeout in seconds.", field="statement_timeout_seconds") from None
            run, created = explain_analyze_start(
                target=target,
                query=query,
                queryid=queryid_parse(queryid),
                statement_timeout_seconds=timeout,
                actor=request.user,
                via="ui",
            )
            if not created:
                messages.info(request, "This query is already being explained on this target: here is that run.")
            return redirect("optimizer:explain-run", run_id=run.id)
        if mode not in ("auto", "plain", "generic"):
            raise InvalidInput("Choose EXPLAIN, the generic plan or EXPLAIN ANALYZE.", field="mode")
        context["result"] = explain(target=target, query=query, mode=mode, actor=request.user, via="ui")
        context["result_json"] = json.dumps(context["result"].plan, indent=2)
    except InvalidInput as exc:
        context["error"] = exc
        return render(request, "optimizer/explain.html", context, status=exc.status_code)
    except QueueUnavailable as exc:
        context["error"] = exc
        return render(request, "optimizer/explain.html", context, status=503)
    return render(request, "optimizer/explain.html", context)


def _explain_run_context(request: HttpRequest, run) -> dict:
    live = has_role(request.user, OPERATOR)  # pg_stat_activity is read on the target: operators only
    return {
        "run": run,
        "tree": plan_tree(run.plan) if run.plan else None,
        "plan_json": json.dumps(run.plan, indent=2) if run.plan else "",
        "activity": explain_run_activity(run=run) if live else None,
        "elapsed": (run.finished_at or timezone.now()) - run.started_at if run.started_at else None,
    }


@require_GET
def explain_run_view(request: HttpRequest, run_id: int) -> HttpResponse:
    run = explain_run_get(run_id=run_id)
    context = _explain_run_context(request, run)
    if requested_fragment(request, "run"):
        response = render(request, "optimizer/explain_run.html#run", context)
        return response if run.is_live else HttpResponseStopPolling(response.content)
    return render(request, "optimizer/explain_run.html", context)


@require_POST
@role_required(OPERATOR)
def activity_signal(request: HttpRequest, target_id: int, action: str) -> HttpResponse:
    """Cancel (pg_cancel_backend) or terminate (pg_terminate_backend) a backend as the page showed it."""
    target = get_object_or_404(postgres_targets(), pk=target_id)
    try:
        pid = request.POST.get("pid", "")
        if not pid.isdigit() or not 0 < int(pid) < 2**31:
            raise InvalidInput("pid must be a backend's process id.", field="pid")
        result = backend_signal(
            target=target,
            action=action,
            pid=int(pid),
            backend_start=_shown_time(request, "backend_start", required=True),
            query_start=_shown_time(request, "query_start", required=False),
            actor=request.user,
            via="ui",
        )
    except (InvalidInput, PermissionDenied) as exc:
        if not request.htmx:
            messages.error(request, str(exc))
            return redirect("optimizer:activity", target_id=target.id)
        # 422: the page swaps it in where the result goes (other 4xx stay out of the page).
        return render(request, "optimizer/_error.html", {"message": str(exc)}, status=422)
    if not request.htmx:
        (messages.success if result.signalled else messages.warning)(request, result.message)
        return redirect("optimizer:activity", target_id=target.id)
    response = render(request, "optimizer/activity.html#result", {"result": result})
    response["HX-Trigger"] = "activity-changed"  # the live list reads the target again at once
    return response


def explain_run_cancel_view(request: HttpRequest, run_id: int) -> HttpResponse:
    run = explain_run_get(run_id=run_id)
    try:
        run = explain_analyze_cancel(run=run, actor=request.user, via="ui")
    except InvalidInput as exc:
        messages.error(request, str(exc))
    if request.htmx:
        response = render(request, "optimizer/explain_run.html#run", _explain_run_context(request, run))
        return response if run.is_live else HttpResponseStopPolling(response.content)
    return redirect("optimizer:explain-run", run_id=run.id)
