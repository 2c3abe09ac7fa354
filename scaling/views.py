"""Scaling pages: the services list, a page per service (chart, rules, what-if, log, manual scale)."""

from __future__ import annotations

import json

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from core.charts import figure_json
from core.errors import InvalidInput
from core.forms import form_submit
from core.htmx import render_page, requested_fragment
from core.roles import OPERATOR, ensure_role, role_required
from core.views import section_context
from monitoring.timeranges import RANGE_PRESETS, resolve_range
from scaling.charts import decisions_figure, replay_figure
from scaling.executors.base import executor_classes
from scaling.forms import (
    NEW_RULE_AUTO_ID,
    SCHEDULE_AUTO_ID,
    WHATIF_RANGES,
    BehaviourForm,
    RuleForm,
    ScaleForm,
    ScheduleForm,
    ServiceForm,
)
from scaling.models import ScaledService, ScalingDecision, ScalingRule, ScheduleOverride
from scaling.selectors import (
    RulePickerChoices,
    decision_list,
    decision_why,
    decisions_between,
    driving_rule,
    rule_history,
    rule_picker_choices,
    rules_series,
    services_with_last_decision,
)
from scaling.services.crud import (
    ServiceInput,
    rule_delete,
    rule_upsert,
    schedule_create,
    schedule_delete,
    service_create,
    service_delete,
    service_set_state,
    service_update,
)
from scaling.services.evaluation import service_evaluate, service_scale
from scaling.services.whatif import replay_explained_steps, rule_replay

CHART_RANGES = ("1h", "6h", "24h", "7d")


def _kinds() -> list[tuple[str, str]]:
    return [(kind, cls.label) for kind, cls in sorted(executor_classes().items())]


def _index_context(form: ServiceForm) -> dict:
    rows = [(service, decision, decision_why(decision)) for service, decision in services_with_last_decision()]
    return {**section_context("scaling"), "rows": rows, "form": form}


@require_http_methods(["GET", "POST"])
def index(request: HttpRequest) -> HttpResponse:
    form = ServiceForm(kinds=_kinds(), initial={"executor_kind": "webhook"})
    status = 200
    if request.method == "POST":
        ensure_role(request.user, OPERATOR)
        form = ServiceForm(request.POST, kinds=_kinds())
        service = form_submit(
            form, lambda data: service_create(data=ServiceInput(**data), actor=request.user, via="ui")
        )
        if service is not None:
            messages.success(request, f"Service “{service.name}” added. Add a rule, try it with what-if, enable it.")
            return redirect("scaling:service", name=service.name)
        status = 422
    fragment = requested_fragment(request, "services")
    return render_page(request, "scaling/index.html", _index_context(form), fragment=fragment, status=status)


def _behaviour_form(service: ScaledService) -> BehaviourForm:
    return BehaviourForm(
        initial={
            "min_replicas": service.min_replicas,
            "max_replicas": service.max_replicas,
            "tier": service.tier,
            "executor_config": json.dumps(service.executor_config) if service.executor_config else "",
            "scale_up_stabilization_seconds": service.scale_up_stabilization_seconds,
            "scale_up_select": service.scale_up_select,
            "scale_up_policies": json.dumps(service.scale_up_policies),
            "scale_down_stabilization_seconds": service.scale_down_stabilization_seconds,
            "scale_down_select": service.scale_down_select,
            "scale_down_policies": json.dumps(service.scale_down_policies),
        }
    )


def _picker_choices(rules: list[ScalingRule]) -> RulePickerChoices:
    return rule_picker_choices(keep_series_ids=[r.series_id for r in rules if r.series_id])


def _rule_form(*args, choices: RulePickerChoices, **kwargs) -> RuleForm:
    """A rule form whose series is a picker of the monitored series (its target is a name search)."""
    return RuleForm(*args, series_choices=choices.series, promql_sources=choices.promql_sources, **kwargs)


def _rule_forms(
    service: ScaledService, choices: RulePickerChoices, invalid: RuleForm | None = None
) -> list[tuple[ScalingRule, RuleForm]]:
    rules = list(service.rules.all())
    reads = rules_series(rules)
    series_names = dict(choices.series)
    forms = []
    for rule in service.rules.all():
        if invalid is not None and invalid.prefix == f"rule-{rule.id}":
            forms.append((rule, invalid))
            continue
        initial = {
            "name": rule.name,
            "source": rule.source,
            "series_id": rule.series_id,
            "target_id": rule.target_id,
            "metric_name": rule.metric_name,
            "labels": json.dumps(rule.labels) if rule.labels else "",
            "target_value": rule.target_value,
            "target_type": rule.target_type,
            "tolerance": rule.tolerance,
            "enabled": rule.enabled,
            "expression": rule.expression,
            "promql_source": rule.promql_source.name if rule.promql_source_id else "",
        }
        form = _rule_form(initial=initial, prefix=f"rule-{rule.id}", choices=choices)
        form.fields["name"].disabled = True
        forms.append((rule, form))
    for rule, _ in forms:
        rule.reads = reads[rule.id]  # what the rule reads and how many series matched, for the table
        # A collected series by its target and metric, not its number.
        rule.reads_label = series_names.get(rule.series_id, rule.reads.description) if rule.series_id else ""
    return forms


def _live_context(service: ScaledService, preset: str) -> dict:
    start, end, label = resolve_range(preset=preset if preset in CHART_RANGES else "6h")
    decisions = list(decision_list(service=service, limit=30))
    last = decisions[0] if decisions else None
    rule = driving_rule(service, last)
    metric, metric_error = [], ""
    try:
        metric = rule_history(rule=rule, start=start, end=end, max_points=600) if rule else []
    except InvalidInput as exc:  # a PromQL rule's history: its error or its source's, shown above the chart
        metric_error = str(exc)
    # The count the "Replicas" card shows: the chart draws it as a level when no decision falls in the range.
    current = service.applied_replicas if service.applied_replicas is not None else service.observed_replicas
    figure = decisions_figure(
        decisions=decisions_between(service=service, start=start, end=end),
        metric=metric,
        metric_name=rule.name if rule else "",
        target=rule.target_value if rule else None,
        until=end,
        start=start,
        current_replicas=current,
        decided_before=last is not None,
        metric_unit=rules_series([rule])[rule.id].unit if rule else "",
    )
    return {
        "service": service,
        "decisions": decisions,
        "last": last,
        "why": decision_why(last),
        "driving_rule": rule,
        "figure_json": figure_json(figure),
        "metric_error": metric_error,
        "range_label": label,
        "ranges": CHART_RANGES,
    }


def _service_page(request, service: ScaledService, *, status: int = 200, **forms) -> HttpResponse:
    choices = _picker_choices(list(service.rules.all()))
    context = {
        **_live_context(service, request.GET.get("range", "6h")),
        "behaviour_form": forms.get("behaviour_form") or _behaviour_form(service),
        "rule_forms": _rule_forms(service, choices, invalid=forms.get("rule_form_existing") and forms.get("rule_form")),
        "new_rule_form": forms.get("new_rule_form")
        or _rule_form(initial={"tolerance": 0.1, "enabled": False}, auto_id=NEW_RULE_AUTO_ID, choices=choices),
        "metric_names": choices.metric_names,
        "scale_form": forms.get("scale_form")
        or ScaleForm(
            initial={"replicas": service.applied_replicas or service.observed_replicas or max(service.min_replicas, 1)}
        ),
        "schedule_form": forms.get("schedule_form") or ScheduleForm(auto_id=SCHEDULE_AUTO_ID),
        "whatif_ranges": WHATIF_RANGES,
        "secret_fields": service.secret_fields_set,
        "open_section": forms.get("open_section", ""),
    }
    return render(request, "scaling/service.html", context, status=status)


def _get_service(name: str) -> ScaledService:
    return get_object_or_404(ScaledService.objects.prefetch_related("rules__promql_source", "schedules"), name=name)


@require_GET
def service_detail(request: HttpRequest, name: str) -> HttpResponse:
    service = _get_service(name)
    if requested_fragment(request, "live"):
        return render(request, "scaling/service.html#live", _live_context(service, request.GET.get("range", "6h")))
    return _service_page(request, service)


@require_POST
@role_required(OPERATOR)
def service_edit(request: HttpRequest, name: str) -> HttpResponse:
    service = _get_service(name)
    form = BehaviourForm(request.POST)
    saved = form_submit(form, lambda data: service_update(service=service, changes=data, actor=request.user, via="ui"))
    if saved is not None:
        messages.success(request, f"Service “{service.name}” saved.")
        return redirect("scaling:service", name=service.name)
    return _service_page(request, _get_service(name), status=422, behaviour_form=form, open_section="behaviour")


@require_POST
@role_required(OPERATOR)
def service_state(request: HttpRequest, name: str) -> HttpResponse:
    service = _get_service(name)
    actions = {  # action: (flags, what the message says was done)
        "enable": ({"enabled": True}, "enabled"),
        "disable": ({"enabled": False}, "disabled"),
        "pause": ({"paused": True}, "paused"),
        "resume": ({"paused": False}, "resumed"),
        "dry-run-on": ({"dry_run": True}, "switched to dry run"),
        "dry-run-off": ({"dry_run": False}, "out of dry run: it now calls its executor"),
    }
    action = actions.get(request.POST.get("action", ""))
    if action is None:
        messages.error(request, "Unknown action.")
    else:
        flags, done = action
        service_set_state(service=service, actor=request.user, via="ui", **flags)
        messages.success(request, f"Service {service.name} {done}.")
    return redirect("scaling:service", name=service.name)


@require_POST
@role_required(OPERATOR)
def service_remove(request: HttpRequest, name: str) -> HttpResponse:
    service = _get_service(name)
    service_delete(service=service, actor=request.user, via="ui")
    messages.success(request, f"Service “{name}” and its decisions were deleted.")
    return redirect("scaling:index")


@require_POST
@role_required(OPERATOR)
def rule_save(request: HttpRequest, name: str) -> HttpResponse:
    service = _get_service(name)
    rule_id = request.POST.get("rule_id")
    existing = None
    if rule_id:
        existing = get_object_or_404(ScalingRule, pk=rule_id if rule_id.isdigit() else 0, service=service)
    choices = _picker_choices([existing] if existing else [])
    if existing:
        form = _rule_form(request.POST, prefix=f"rule-{existing.id}", choices=choices)
    else:
        form = _rule_form(request.POST, auto_id=NEW_RULE_AUTO_ID, choices=choices)
    if existing:
        form.fields["name"].disabled = True  # renaming would make another rule: the name is the rule's key
        form.initial["name"] = existing.name

    def save(data: dict) -> ScalingRule:
        if existing is None and service.rules.filter(name=data["name"]).exists():
            raise InvalidInput("This service has a rule with that name already.", field="name")
        changes = {k: v for k, v in data.items() if k != "name"}
        return rule_upsert(service=service, name=data["name"], data=changes, actor=request.user, via="ui")

    rule = form_submit(form, save)
    if rule is not None:
        messages.success(request, f"Rule “{rule.name}” saved.")
        return redirect("scaling:service", name=service.name)
    forms = {"rule_form": form, "rule_form_existing": True} if existing else {"new_rule_form": form}
    return _service_page(request, _get_service(name), status=422, open_section="rules", **forms)


@require_POST
@role_required(OPERATOR)
def rule_remove(request: HttpRequest, name: str, rule: str) -> HttpResponse:
    found = get_object_or_404(ScalingRule, service__name=name, name=rule)
    rule_delete(rule=found, actor=request.user, via="ui")
    messages.success(request, f"Rule “{rule}” deleted.")
    return redirect("scaling:service", name=name)


@require_POST
@role_required(OPERATOR)
def rule_toggle(request: HttpRequest, name: str, rule: str) -> HttpResponse:
    found = get_object_or_404(ScalingRule.objects.select_related("service"), service__name=name, name=rule)
    rule_upsert(
        service=found.service,
        name=rule,
        data={"enabled": not found.enabled},
        actor=request.user,
        via="ui",
        partial=True,
    )
    messages.success(request, f"Rule “{rule}” {'disabled' if found.enabled else 'enabled'}.")
    return redirect("scaling:service", name=name)


@require_GET
def rule_whatif(request: HttpRequest, name: str) -> HttpResponse:
    rule = get_object_or_404(
        ScalingRule.objects.select_related("service"), service__name=name, name=request.GET.get("rule", "")
    )
    preset = request.GET.get("range") if request.GET.get("range") in WHATIF_RANGES else "6h"
    start, end = timezone.now() - RANGE_PRESETS[preset], timezone.now()
    unit = rules_series([rule])[rule.id].unit
    error, replay, replay_json = "", None, ""
    try:
        replay = rule_replay(rule=rule, start=start, end=end)
        per_replica = rule.target_type == ScalingRule.TargetType.VALUE
        replay_json = figure_json(replay_figure(replay=replay, metric_unit=unit, per_replica=per_replica))
    except InvalidInput as exc:
        error = str(exc)
    explained = replay_explained_steps(replay) if replay is not None else []
    context = {
        "replay": replay,
        "figure_json": replay_json,
        "error": error,
        "rule": rule,
        "unit": unit,
        "preset": preset,
        "last_step": replay.steps[-1] if replay and replay.steps else None,
        "explained": explained[-20:],
        "explained_count": len(explained),
    }
    return render(request, "scaling/_whatif.html", context, status=422 if error else 200)


@require_POST
@role_required(OPERATOR)
def evaluate_now(request: HttpRequest, name: str) -> HttpResponse:
    service = _get_service(name)
    try:
        decision = service_evaluate(service=service, actor=request.user, via="ui")
    except InvalidInput as exc:
        messages.error(request, str(exc))
    else:
        if decision.result == ScalingDecision.Result.FAILED:
            messages.error(request, f"Evaluation failed: {decision.error}")
        else:
            messages.success(request, f"Evaluated: {decision.get_result_display().lower()}. {decision_why(decision)}")
    return redirect("scaling:service", name=name)


@require_POST
@role_required(OPERATOR)
def scale(request: HttpRequest, name: str) -> HttpResponse:
    service = _get_service(name)
    form = ScaleForm(request.POST)

    def save(data: dict) -> ScalingDecision:
        dry_run = True if data["dry_run"] else None  # unticked: the service's own dry-run setting decides
        return service_scale(service=service, replicas=data["replicas"], actor=request.user, via="ui", dry_run=dry_run)

    decision = form_submit(form, save)
    if decision is not None:
        if decision.result == ScalingDecision.Result.FAILED:
            messages.error(request, f"Manual scale failed: {decision.error}")
        else:
            messages.success(request, f"Manual scale: {decision.get_result_display().lower()}. {decision.summary}")
        return redirect("scaling:service", name=name)
    return _service_page(request, _get_service(name), status=422, scale_form=form, open_section="scale")


@require_POST
@role_required(OPERATOR)
def schedule_add(request: HttpRequest, name: str) -> HttpResponse:
    service = _get_service(name)
    form = ScheduleForm(request.POST, auto_id=SCHEDULE_AUTO_ID)
    override = form_submit(form, lambda data: schedule_create(service=service, actor=request.user, via="ui", **data))
    if override is not None:
        messages.success(request, "Schedule override added.")
        return redirect("scaling:service", name=name)
    return _service_page(request, _get_service(name), status=422, schedule_form=form, open_section="schedules")


@require_POST
@role_required(OPERATOR)
def schedule_remove(request: HttpRequest, name: str, schedule_id: int) -> HttpResponse:
    override = get_object_or_404(ScheduleOverride, pk=schedule_id, service__name=name)
    schedule_delete(override=override, actor=request.user, via="ui")
    messages.success(request, "Schedule override deleted.")
    return redirect("scaling:service", name=name)
