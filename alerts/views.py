"""Alerts pages: the alert list (with ack and silence), one alert, rules with a live preview, channels
with their delivery log and "Send test", and the firing banner every page polls. Thin: parse the
form, call one service or selector, render."""

from __future__ import annotations

from dataclasses import asdict
from datetime import timedelta

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from alerts.forms import AckForm, ChannelForm, RuleForm, SilenceForm, pairs_text, silence_initial
from alerts.models import EVENT_KINDS, THRESHOLD_KINDS, Alert, AlertRule, Channel, Silence
from alerts.selectors import (
    alert_list,
    alert_notifications,
    alert_view,
    banner_summary,
    channel_backlog,
    channel_list,
    delivery_log,
    rule_list,
    rule_preview,
    rule_replay_preview,
    silence_list,
)
from alerts.services.delivery import channel_test_send
from alerts.services.manage import (
    ChannelInput,
    RuleInput,
    SilenceInput,
    alert_ack,
    alert_resolve,
    channel_create,
    channel_delete,
    channel_update,
    rule_create,
    rule_delete,
    rule_input_from,
    rule_update,
    rule_validate,
    silence_create,
    silence_expire,
)
from alerts.services.matching import matchers_text
from alerts.services.whatif import REPLAY_RANGES
from core.errors import InvalidInput
from core.forms import form_submit
from core.htmx import render_page, requested_fragment
from core.roles import OPERATOR, ensure_role, role_required
from core.views import safe_next, section_context
from monitoring.selectors.metric_names import metric_units

BANNER_LIMIT = 3
PREVIEW_HINT = "Name a metric (the field suggests the collected ones) to see the series the rule would watch."
PROMQL_PREVIEW_HINT = "Write a PromQL expression to see what it gives now and what would fire."


# --- the banner on every page -------------------------------------------------------------------


@require_GET
def banner(request: HttpRequest) -> HttpResponse:
    """The banner's content; 204 (nothing to swap) when the page already shows this version of it,
    so the live region around it changes, and is announced, only when what it says changes."""
    summary = banner_summary()
    if request.GET.get("shown") == summary.version:
        return HttpResponse(status=204)
    context = {
        "summary": summary,
        "alerts": summary.alerts[:BANNER_LIMIT],
        "more": len(summary.alerts) - BANNER_LIMIT,
    }
    return render(request, "alerts/_banner.html", context)


# --- alerts -------------------------------------------------------------------------------------


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    views = alert_list(limit=300)
    context = {
        "firing": [v for v in views if v.alert.state == "firing"],
        "pending": [v for v in views if v.alert.state == "pending"],
        "resolved": [v for v in views if v.alert.state == "resolved"][:50],
        "silences": silence_list()[:50],
        "now": timezone.now(),
        "units": metric_units(),
        **section_context("alerts"),
    }
    return render_page(request, "alerts/index.html", context, fragment=requested_fragment(request, "lists"))


@require_GET
def alert_detail(request: HttpRequest, alert_id: int) -> HttpResponse:
    alert = get_object_or_404(Alert.objects.select_related("rule", "target", "acked_by"), pk=alert_id)
    notifications = list(alert_notifications(alert=alert))
    context = {
        "view": alert_view(alert=alert),
        "history": alert.changes.all()[:100],
        "notifications": notifications,
        "notified_channels": list(
            {item.notification.channel_id: item.notification.channel for item in notifications}.values()
        ),
        "units": metric_units(),
        "ack_form": AckForm(),
        "silence_form": SilenceForm(initial=silence_initial(alert)),
    }
    return render(request, "alerts/alert.html", context)


@require_POST
@role_required(OPERATOR)
def alert_ack_view(request: HttpRequest, alert_id: int) -> HttpResponse:
    alert = get_object_or_404(Alert, pk=alert_id)
    form = AckForm(request.POST)
    try:
        form.is_valid()
        alert_ack(alert=alert, actor=request.user, comment=form.cleaned_data.get("comment", ""), via="ui")
        messages.success(request, f"Acknowledged “{alert.title}”.")
    except InvalidInput as exc:
        messages.error(request, str(exc))
    return redirect(safe_next(request, "alerts:index"))


@require_POST
@role_required(OPERATOR)
def alert_resolve_view(request: HttpRequest, alert_id: int) -> HttpResponse:
    alert = get_object_or_404(Alert, pk=alert_id)
    try:
        alert_resolve(alert=alert, actor=request.user, via="ui")
        messages.success(request, f"Resolved “{alert.title}”.")
    except InvalidInput as exc:
        messages.error(request, str(exc))
    return redirect(safe_next(request, "alerts:index"))


@require_http_methods(["GET", "POST"])
@role_required(OPERATOR)
def silence_new(request: HttpRequest) -> HttpResponse:
    alert = None
    if request.GET.get("alert", "").isdigit():
        alert = Alert.objects.filter(pk=int(request.GET["alert"])).first()
    form = SilenceForm(initial=silence_initial(alert) if alert else None)
    status = 200
    if request.method == "POST":
        form = SilenceForm(request.POST)

        def save(data: dict) -> Silence:
            ends_at = timezone.now() + timedelta(hours=int(data["hours"]))
            wanted = SilenceInput(matchers=data["matchers"], ends_at=ends_at, comment=data["comment"])
            return silence_create(data=wanted, actor=request.user, via="ui")

        silence = form_submit(form, save)
        if silence is not None:
            messages.success(request, f"Silenced {silence} until {silence.ends_at:%Y-%m-%d %H:%M} UTC.")
            return redirect("alerts:index")
        status = 422
    return render(request, "alerts/silence.html", {"form": form, "alert": alert}, status=status)


@require_POST
@role_required(OPERATOR)
def silence_expire_view(request: HttpRequest, silence_id: int) -> HttpResponse:
    silence = get_object_or_404(Silence, pk=silence_id)
    silence_expire(silence=silence, actor=request.user, via="ui")
    messages.success(request, f"Silence {silence} ended.")
    return redirect("alerts:index")


# --- rules --------------------------------------------------------------------------------------


@require_GET
def rules(request: HttpRequest) -> HttpResponse:
    return render(request, "alerts/rules.html", {"rules": rule_list(), "units": metric_units()})


# Shown in the form as typed numbers: 80.0 reads "80" (a whole float becomes an int, which is the same value).
RULE_NUMBER_FIELDS = ("warning_threshold", "critical_threshold", "forecast_limit")


def _rule_initial(rule: AlertRule) -> dict:
    initial = asdict(rule_input_from(rule))
    for name in RULE_NUMBER_FIELDS:
        value = initial[name]
        if isinstance(value, float) and value.is_integer():
            initial[name] = int(value)
    initial["labels"] = pairs_text(rule.labels)
    initial["series_labels"] = pairs_text(rule.series_labels)
    return initial


@require_http_methods(["GET", "POST"])
def rule_edit(request: HttpRequest, rule_id: int | None = None) -> HttpResponse:
    """A rule's page: operators edit its definition, viewers read it (the template shows them text, not
    inputs they could not save). A new rule is only for operators."""
    rule = get_object_or_404(AlertRule, pk=rule_id) if rule_id else None
    if rule is None:
        ensure_role(request.user, OPERATOR)
    form = RuleForm(initial=_rule_initial(rule) if rule else {"severity": "critical"})
    status = 200
    if request.method == "POST":
        ensure_role(request.user, OPERATOR)
        form = RuleForm(request.POST)

        def save(data: dict) -> AlertRule:
            if rule is None:
                return rule_create(data=RuleInput(**data), actor=request.user, via="ui")
            return rule_update(rule=rule, data=RuleInput(**data), actor=request.user, via="ui")

        saved = form_submit(form, save)
        if saved is not None:
            messages.success(request, f"Rule “{saved.name}” saved.")
            return redirect("alerts:rule", rule_id=saved.id)
        status = 422
    preview, preview_error = [], None
    if rule:
        try:  # a PromQL rule's query may fail now (its source down): the page says so and still renders
            preview = rule_preview(data=rule_input_from(rule))
        except InvalidInput as exc:
            preview_error = str(exc)
    replay, replay_error = None, None
    replay_range = request.GET.get("replay_range", "6h")
    replay_range = replay_range if replay_range in REPLAY_RANGES else "6h"
    if rule and rule.kind == AlertRule.Kind.PROMQL:
        try:  # the same errors as the preview: the page says so and still renders
            replay = rule_replay_preview(data=rule_input_from(rule), replay_range=replay_range)
        except InvalidInput as exc:
            replay_error = str(exc)
    context = {
        "replay": replay,
        "replay_error": replay_error,
        "replay_range": replay_range,
        "preview_error": preview_error,
        "promql": rule is not None and rule.kind == AlertRule.Kind.PROMQL,
        "rule": rule,
        "form": form,
        "preview": preview,
        "preview_hint": None if rule else PREVIEW_HINT,
        "alerts": alert_list(rule_id=rule.id) if rule else [],
        "units": metric_units(),
    }
    return render(request, "alerts/rule.html", context, status=status)


@require_POST
def rule_preview_view(request: HttpRequest) -> HttpResponse:
    """The editor's live preview: the current values of what the form would watch.

    It speaks only of what was typed: no "required" for the name (the preview needs none) and a
    neutral hint, not "no series match", until a metric is named.
    """
    form = RuleForm(request.POST)
    form.fields["name"].required = False
    rows, error, hint, note = [], None, None, None
    data = RuleInput(**form.cleaned_data) if form.is_valid() else None
    if data is None:
        error = "; ".join(f"{form[name].label}: {' '.join(errors)}" for name, errors in form.errors.items())
    elif data.kind == AlertRule.Kind.PROMQL and not data.expression.strip():
        hint = PROMQL_PREVIEW_HINT
    elif data.kind not in EVENT_KINDS and data.kind != AlertRule.Kind.PROMQL and not data.metric:
        hint = PREVIEW_HINT
    elif data.kind in THRESHOLD_KINDS and data.warning_threshold is None and data.critical_threshold is None:
        # Not an error while the form is being filled in: the current values are worth seeing already.
        note = "Set a warning or a critical threshold to see what the rule would say."
        rows = rule_preview(data=data)
    else:
        try:
            rows = rule_preview(data=rule_validate(data, check_name=False))
        except InvalidInput as exc:
            error = str(exc)
    context = {"preview": rows, "preview_error": error, "preview_hint": hint, "preview_note": note}
    context["promql"] = data is not None and data.kind == AlertRule.Kind.PROMQL
    context["units"] = metric_units()
    return render(request, "alerts/rule.html#preview", context)


@require_POST
@role_required(OPERATOR)
def rule_remove(request: HttpRequest, rule_id: int) -> HttpResponse:
    rule = get_object_or_404(AlertRule, pk=rule_id)
    rule_delete(rule=rule, actor=request.user, via="ui")
    messages.success(request, f"Rule “{rule.name}” and its alerts were deleted.")
    return redirect("alerts:rules")


# --- channels -----------------------------------------------------------------------------------


def _channel_initial(channel: Channel) -> dict:
    return {
        **{name: getattr(channel, name) for name in ChannelInput.__dataclass_fields__ if name != "url"},
        "matchers": matchers_text(channel.matchers),
        "group_by": ", ".join(channel.group_by),
    }


@require_http_methods(["GET", "POST"])
def channels(request: HttpRequest) -> HttpResponse:
    form = ChannelForm()
    status = 200
    if request.method == "POST":
        ensure_role(request.user, OPERATOR)
        form = ChannelForm(request.POST)
        channel = form_submit(
            form, lambda data: channel_create(data=ChannelInput(**data), actor=request.user, via="ui")
        )
        if channel is not None:
            messages.success(request, f"Channel “{channel.name}” added. Send a test to check it.")
            return redirect("alerts:channel", channel_id=channel.id)
        status = 422
    return render(request, "alerts/channels.html", {"channels": channel_list(), "form": form}, status=status)


@require_http_methods(["GET", "POST"])
def channel_detail(request: HttpRequest, channel_id: int) -> HttpResponse:
    channel = get_object_or_404(Channel, pk=channel_id)
    form = ChannelForm(initial=_channel_initial(channel))
    status = 200
    if request.method == "POST":
        ensure_role(request.user, OPERATOR)
        form = ChannelForm(request.POST)

        def save(data: dict) -> Channel:
            return channel_update(channel=channel, data=ChannelInput(**data), actor=request.user, via="ui")

        saved = form_submit(form, save)
        if saved is not None:
            messages.success(request, f"Channel “{saved.name}” saved.")
            return redirect("alerts:channel", channel_id=channel.id)
        status = 422
    context = {
        "channel": channel,
        "form": form,
        "attempts": delivery_log(channel=channel),
        "backlog": channel_backlog(channel=channel),
    }
    fragment = requested_fragment(request, "log")
    return render_page(request, "alerts/channel.html", context, fragment=fragment, status=status)


@require_POST
@role_required(OPERATOR)
def channel_test(request: HttpRequest, channel_id: int) -> HttpResponse:
    channel = get_object_or_404(Channel, pk=channel_id)
    outcome = channel_test_send(channel=channel, actor=request.user, via="ui")
    if outcome.outcome == "sent":
        messages.success(request, f"Test message delivered ({outcome.detail}).")
    else:
        messages.error(request, f"Test message not delivered: {outcome.detail}")
    return redirect("alerts:channel", channel_id=channel.id)


@require_POST
@role_required(OPERATOR)
def channel_remove(request: HttpRequest, channel_id: int) -> HttpResponse:
    channel = get_object_or_404(Channel, pk=channel_id)
    channel_delete(channel=channel, actor=request.user, via="ui")
    messages.success(request, f"Channel “{channel.name}” deleted.")
    return redirect("alerts:channels")
