"""Monitoring pages: the Overview, targets, a page per target, slow queries, the metrics explorer, and
the PromQL sources that rules may read."""

from __future__ import annotations

import json

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from core.charts import figure_json, health_latency_figure
from core.errors import InvalidInput
from core.forms import form_submit
from core.health import control_plane_status
from core.htmx import render_page, requested_fragment
from core.roles import OPERATOR, ensure_role, role_required
from core.selectors import queue_lengths
from monitoring.dashboards import all_metric_charts, explorer_chart, overview_panels
from monitoring.forms import PromQLSourceForm, TargetFilterForm, TargetForm
from monitoring.models import PromQLSource, Series, Target
from monitoring.selectors.forwarding import forwarding_status
from monitoring.selectors.promql_sources import promql_source_list
from monitoring.selectors.targets import target_forecasts, target_list, target_name_matches, target_summary
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
from monitoring.timeranges import RANGE_PRESETS, resolve_range

QUERY_WINDOWS = {"1h": "1h", "6h": "6h", "24h": "24h", "7d": "7d"}
QUERY_ORDERS = {"total_time": "Total time", "mean_time": "Mean time", "calls": "Calls", "rows": "Rows"}


@require_GET
def overview(request: HttpRequest) -> HttpResponse:
    fragment = requested_fragment(request, "health", "targets")
    context = {}
    if fragment in (None, "health"):
        status = control_plane_status()
        context.update(
            status=status, queues=queue_lengths(), latency_figure=figure_json(health_latency_figure(status.checks))
        )
    if fragment in (None, "targets"):
        end = timezone.now()
        overview = overview_panels(start=end - RANGE_PRESETS["1h"], end=end)
        charted_pinned = sum(1 for panel in overview.panels if not panel.target.builtin)
        context.update(
            panels=overview.panels, overflow_pinned=overview.pinned_total - charted_pinned, summary=target_summary()
        )
    return render_page(request, "monitoring/overview.html", context, fragment=fragment)


TARGETS_PER_PAGE = 50


@require_http_methods(["GET", "POST"])
def index(request: HttpRequest) -> HttpResponse:
    form = TargetForm(initial={"kind": Target.Kind.POSTGRES})
    status = 200
    if request.method == "POST":
        ensure_role(request.user, OPERATOR)
        form = TargetForm(request.POST)
        target = form_submit(form, lambda data: target_create(data=TargetInput(**data), actor=request.user, via="ui"))
        if target is not None:
            messages.success(
                request, f"Target “{target.name}” added; it is collected every {target.interval_seconds} s."
            )
            return redirect("monitoring:target", target_id=target.id)
        status = 422
    filters = TargetFilterForm(request.GET, auto_id="filter_%s")
    if request.GET and not filters.is_valid():
        status = 400  # the page still lists, filtered by the valid fields; the bad one says what is wrong
    page = Paginator(target_list(**filters.filters()), TARGETS_PER_PAGE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    context = {
        "page": page,
        "targets": page.object_list,
        "filters": filters,
        "filter_query": query.urlencode(),
        "filtered": any(v is not None for v in filters.filters().values()),
        "form": form,
        "kinds": Target.Kind.choices,
        "forwarding": forwarding_status(),
        "promql_sources": promql_source_list(),
    }
    return render(request, "monitoring/index.html", context, status=status)


@require_GET
def target_options(request: HttpRequest) -> HttpResponse:
    """Suggestions for a target picker's datalist: the typed text arrives under the input's own name,
    `field` (default `q`)."""
    field = request.GET.get("field") or "q"
    text = request.GET.get(field, "").strip()[:100]
    if "\x00" in text:  # PostgreSQL text cannot hold NUL, so no name has one
        return HttpResponseBadRequest(f"{field}: no NUL characters.", content_type="text/plain")
    kinds = [kind for kind in request.GET.getlist("kind") if kind in Target.Kind.values]
    context = {"targets": target_name_matches(text=text, kinds=kinds)}
    return render(request, "monitoring/_target_options.html", context)


def _edit_form(target: Target) -> TargetForm:
    initial = {
        "name": target.name,
        "kind": target.kind,
        "interval_seconds": target.interval_seconds,
        "timeout_seconds": target.timeout_seconds,
        "enabled": target.enabled,
        "group": target.group,
        "pinned": target.pinned,
        "options": json.dumps(target.options) if target.options else "",
    }
    return TargetForm(editing=True, initial=initial)


def _target_context(target: Target, *, preset: str | None, form: TargetForm | None, with_forecasts: bool) -> dict:
    start, end, range_label = resolve_range(preset=preset)
    return {
        "target": target,
        "range_label": range_label,
        "presets": list(RANGE_PRESETS),
        "charts": all_metric_charts(target=target, start=start, end=end),
        "forecasts": target_forecasts(target=target) if with_forecasts else [],
        "form": form,
    }


@require_GET
def target_detail(request: HttpRequest, target_id: int) -> HttpResponse:
    target = get_object_or_404(Target, pk=target_id)
    preset = request.GET.get("range")
    if requested_fragment(request, "charts"):
        # The live refresh renders only the charts: no forecasts, no form.
        context = _target_context(target, preset=preset, form=None, with_forecasts=False)
        return render(request, "monitoring/target.html#charts", context)
    context = _target_context(target, preset=preset, form=_edit_form(target), with_forecasts=True)
    return render(request, "monitoring/target.html", context)


@require_POST
@role_required(OPERATOR)
def target_edit(request: HttpRequest, target_id: int) -> HttpResponse:
    target = get_object_or_404(Target, pk=target_id)
    form = TargetForm(request.POST, editing=True, initial={"kind": target.kind})

    def save(data: dict) -> Target:
        changes = {k: v for k, v in data.items() if k != "kind"}  # a target's kind never changes
        return target_update(target=target, changes=changes, actor=request.user, via="ui")

    saved = form_submit(form, save)
    if saved is not None:
        messages.success(request, f"Target “{saved.name}” saved.")
        return redirect("monitoring:target", target_id=target.id)
    context = {**_target_context(target, preset="1h", form=form, with_forecasts=False), "show_edit": True}
    return render(request, "monitoring/target.html", context, status=422)


@require_POST
@role_required(OPERATOR)
def target_remove(request: HttpRequest, target_id: int) -> HttpResponse:
    target = get_object_or_404(Target, pk=target_id)
    name = target.name
    target_delete(target=target, actor=request.user, via="ui")
    messages.success(request, f"Target “{name}” and its history were deleted.")
    return redirect("monitoring:index")


@require_POST
@role_required(OPERATOR)
def target_test(request: HttpRequest, target_id: int) -> HttpResponse:
    target = get_object_or_404(Target, pk=target_id)
    result = target_test_connection(target=target)
    return render(request, "monitoring/_test_result.html", {"result": result, "tested_at": timezone.now()})


@require_GET
def slow_queries(request: HttpRequest, target_id: int) -> HttpResponse:
    from monitoring.selectors.statements import slow_queries as select_slow_queries

    target = get_object_or_404(Target, pk=target_id, kind=Target.Kind.POSTGRES)
    window = request.GET.get("window") if request.GET.get("window") in QUERY_WINDOWS else "1h"
    order = request.GET.get("order") if request.GET.get("order") in QUERY_ORDERS else "total_time"
    start, end, _ = resolve_range(preset=window)
    context = {
        "target": target,
        "window": window,
        "windows": list(QUERY_WINDOWS),
        "order": order,
        "order_label": QUERY_ORDERS[order],
        "orders": QUERY_ORDERS,
        "queries": select_slow_queries(target_id=target.id, start=start, end=end, order_by=order, limit=50),
        "start": start,
        "end": end,
    }
    return render(request, "monitoring/queries.html", context)


@require_GET
def explore(request: HttpRequest) -> HttpResponse:
    query = request.GET.get("q", "").strip()
    selected_ids = []
    for value in request.GET.getlist("series"):
        if value.isascii() and value.isdigit() and len(value) <= 18:
            selected_ids.append(int(value))
    error = None
    chart = None
    range_label = "custom"
    try:
        start, end, range_label = resolve_range(
            preset=request.GET.get("range"), start=request.GET.get("from") or None, end=request.GET.get("to") or None
        )
        if selected_ids:
            chart = explorer_chart(series_ids=selected_ids[:20], start=start, end=end)
    except InvalidInput as exc:
        error = str(exc)
    from monitoring.selectors.series import series_search

    candidates = list(series_search(text=query or None, limit=200))
    selected = list(Series.objects.select_related("target").filter(id__in=selected_ids))
    context = {
        "q": query,
        "candidates": candidates,
        "selected": selected,
        "selected_ids": set(selected_ids),
        "chart": chart,
        "range_label": range_label,
        "presets": list(RANGE_PRESETS),
        "error": error,
        "custom_from": request.GET.get("from", ""),
        "custom_to": request.GET.get("to", ""),
    }
    fragment = requested_fragment(request, "chart")
    return render_page(request, "monitoring/explore.html", context, fragment=fragment, status=422 if error else 200)


# --- PromQL sources -----------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
def promql_sources(request: HttpRequest) -> HttpResponse:
    """The external servers PromQL rules may read; operators add one here."""
    form = PromQLSourceForm()
    status = 200
    if request.method == "POST":
        ensure_role(request.user, OPERATOR)
        form = PromQLSourceForm(request.POST)

        def save(data: dict) -> PromQLSource:
            return promql_source_create(data=PromQLSourceInput(**form.changes()), actor=request.user, via="ui")

        source = form_submit(form, save)
        if source is not None:
            messages.success(request, f"PromQL source “{source.name}” added. Test it to check the URL and token.")
            return redirect("monitoring:promql-source", source_id=source.id)
        status = 422
    context = {"sources": promql_source_list(), "form": form}
    return render(request, "monitoring/promql_sources.html", context, status=status)


@require_http_methods(["GET", "POST"])
def promql_source_detail(request: HttpRequest, source_id: int) -> HttpResponse:
    source = get_object_or_404(PromQLSource, pk=source_id)
    initial = {"name": source.name, "url": source.url, "timeout_seconds": source.timeout_seconds}
    form = PromQLSourceForm(initial=initial, editing=True)
    status = 200
    if request.method == "POST":
        ensure_role(request.user, OPERATOR)
        form = PromQLSourceForm(request.POST, editing=True)

        def save(data: dict) -> PromQLSource:
            return promql_source_update(source=source, changes=form.changes(), actor=request.user, via="ui")

        saved = form_submit(form, save)
        if saved is not None:
            messages.success(request, f"PromQL source “{saved.name}” saved.")
            return redirect("monitoring:promql-source", source_id=source.id)
        status = 422
    context = {"source": source, "form": form, "rules": source.alert_rules.order_by("name")}
    return render(request, "monitoring/promql_source.html", context, status=status)


@require_POST
@role_required(OPERATOR)
def promql_source_test_view(request: HttpRequest, source_id: int) -> HttpResponse:
    result = promql_source_test(source=get_object_or_404(PromQLSource, pk=source_id))
    return render(request, "monitoring/_test_result.html", {"result": result, "tested_at": timezone.now()})


@require_POST
@role_required(OPERATOR)
def promql_source_remove(request: HttpRequest, source_id: int) -> HttpResponse:
    source = get_object_or_404(PromQLSource, pk=source_id)
    try:
        promql_source_delete(source=source, actor=request.user, via="ui")
    except InvalidInput as exc:  # rules still read it
        messages.error(request, str(exc))
        return redirect("monitoring:promql-source", source_id=source.id)
    messages.success(request, f"PromQL source “{source.name}” deleted.")
    return redirect("monitoring:promql-sources")
