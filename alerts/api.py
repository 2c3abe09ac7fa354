"""Alerts API: alerts (list with filters, ack, resolve), silences, rules and channels (CRUD), channel
tests and delivery logs. Viewers read; operators act. Paths carry their own /performance prefix."""

from __future__ import annotations

from typing import Literal

from django.shortcuts import get_object_or_404
from django.utils import timezone
from ninja import Field, Query, Router, Schema, Status

from alerts.models import Alert, AlertRule, AlertState, Channel, Severity, Silence
from alerts.schemas import (
    AckIn,
    AlertDetailOut,
    AlertOut,
    AlertReplayOut,
    AlertRuleIn,
    AlertRuleOut,
    ChannelIn,
    ChannelOut,
    ChannelTestOut,
    DeliveryAttemptOut,
    PreviewOut,
    SilenceIn,
    SilenceOut,
)
from alerts.selectors import (
    AlertView,
    alert_list,
    alert_view,
    channel_list,
    delivery_log,
    rule_list,
    rule_preview,
    rule_replay_preview,
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
    silence_create,
    silence_delete,
    silence_expire,
    silence_update,
)
from core.api import ERRORS, section_router
from core.roles import OPERATOR, ensure_role
from core.schemas import ErrorOut

router = Router(tags=["alerts"])
router.add_router("/", section_router("alerts"))
WRITE_ERRORS = {400: ErrorOut, **ERRORS}
PREVIEW_ERRORS = {**WRITE_ERRORS, 502: ErrorOut}
PREFIX = "/performance/alerts"
ReplayRange = Literal["1h", "6h", "24h"]


def alert_out(view: AlertView) -> dict:
    alert = view.alert
    return {
        "id": alert.id,
        "rule_id": alert.rule_id,
        "rule": alert.rule.name,
        "title": alert.title,
        "state": alert.state,
        "severity": alert.severity,
        "value": alert.value,
        "threshold": alert.threshold,
        "labels": alert.labels,
        "target": alert.labels.get("target", ""),
        "metric": alert.metric,
        "message": alert.message,
        "since": alert.since,
        "fired_at": alert.fired_at,
        "resolved_at": alert.resolved_at,
        "acked_by": alert.acked_by.get_username() if alert.acked_by else None,
        "acked_at": alert.acked_at,
        "ack_comment": alert.ack_comment,
        "silenced": view.silenced,
        "silence_id": view.silence.id if view.silence else None,
        "inhibited": view.inhibited_by is not None,
        "source": alert.source,
        "annotations": alert.annotations,
        "generator_url": alert.generator_url,
        "starts_at": alert.starts_at,
        "ends_at": alert.ends_at,
    }


def _alert_detail(alert: Alert) -> dict:
    return {
        **alert_out(alert_view(alert=alert)),
        "history": list(alert.changes.order_by("-at", "-id")[:100]),
        "runbook": alert.rule.runbook,
    }


class AlertFilters(Schema):
    state: AlertState | None = None
    severity: Severity | None = None
    target: str | None = None
    silenced: bool | None = None
    limit: int = Field(200, ge=1, le=1000)


# --- alerts -------------------------------------------------------------------------------------


@router.get(PREFIX, response=list[AlertOut], summary="List alerts")
def alerts_list(request, filters: Query[AlertFilters]):
    """Firing first, then pending, then resolved. Filter by state, severity, target name and silenced."""
    views = alert_list(
        state=filters.state,
        severity=filters.severity,
        target=filters.target,
        silenced=filters.silenced,
        limit=filters.limit,
    )
    return [alert_out(view) for view in views]


@router.get(PREFIX + "/{int:alert_id}", response={200: AlertDetailOut, **ERRORS}, summary="One alert and its history")
def alerts_get(request, alert_id: int):
    return _alert_detail(get_object_or_404(Alert.objects.select_related("rule", "acked_by"), pk=alert_id))


@router.post(PREFIX + "/{int:alert_id}/ack", response={200: AlertDetailOut, **WRITE_ERRORS}, summary="Acknowledge")
def alerts_ack(request, alert_id: int, payload: AckIn):
    ensure_role(request.auth, OPERATOR)
    alert = get_object_or_404(Alert, pk=alert_id)
    return _alert_detail(alert_ack(alert=alert, actor=request.auth, comment=payload.comment, via="api"))


@router.post(PREFIX + "/{int:alert_id}/resolve", response={200: AlertDetailOut, **WRITE_ERRORS}, summary="Resolve")
def alerts_resolve(request, alert_id: int):
    """Resolves now (receivers are told, as for any resolve); a breach that continues opens a new episode."""
    ensure_role(request.auth, OPERATOR)
    alert = get_object_or_404(Alert, pk=alert_id)
    return _alert_detail(alert_resolve(alert=alert, actor=request.auth, via="api"))


# --- silences -----------------------------------------------------------------------------------


def _silence_out(silence: Silence) -> dict:
    now = timezone.now()
    return {
        "id": silence.id,
        "matchers": silence.matchers,
        "starts_at": silence.starts_at,
        "ends_at": silence.ends_at,
        "comment": silence.comment,
        "created_by": silence.created_by_name,
        "created_at": silence.created_at,
        "active": silence.starts_at <= now < silence.ends_at,
    }


def _silence_input(payload: SilenceIn) -> SilenceInput:
    return SilenceInput(
        matchers=[m.dict() for m in payload.matchers],
        starts_at=payload.starts_at,
        ends_at=payload.ends_at,
        comment=payload.comment,
    )


@router.get(PREFIX + "/silences", response=list[SilenceOut], summary="List silences")
def silences_list(request, active: bool | None = None):
    silences = Silence.objects.order_by("-ends_at")
    outs = [_silence_out(s) for s in silences[:500]]
    return [s for s in outs if active is None or s["active"] == active]


@router.post(PREFIX + "/silences", response={201: SilenceOut, **WRITE_ERRORS}, summary="Create a silence")
def silences_create(request, payload: SilenceIn):
    ensure_role(request.auth, OPERATOR)
    return Status(201, _silence_out(silence_create(data=_silence_input(payload), actor=request.auth, via="api")))


@router.get(PREFIX + "/silences/{int:silence_id}", response={200: SilenceOut, **ERRORS}, summary="One silence")
def silences_get(request, silence_id: int):
    return _silence_out(get_object_or_404(Silence, pk=silence_id))


@router.put(PREFIX + "/silences/{int:silence_id}", response={200: SilenceOut, **WRITE_ERRORS}, summary="Change")
def silences_update(request, silence_id: int, payload: SilenceIn):
    ensure_role(request.auth, OPERATOR)
    silence = get_object_or_404(Silence, pk=silence_id)
    return _silence_out(silence_update(silence=silence, data=_silence_input(payload), actor=request.auth, via="api"))


@router.post(PREFIX + "/silences/{int:silence_id}/expire", response={200: SilenceOut, **ERRORS}, summary="Expire")
def silences_expire(request, silence_id: int):
    """Ends the silence now; it stays listed as history."""
    ensure_role(request.auth, OPERATOR)
    silence = get_object_or_404(Silence, pk=silence_id)
    return _silence_out(silence_expire(silence=silence, actor=request.auth, via="api"))


@router.delete(PREFIX + "/silences/{int:silence_id}", response={204: None, **ERRORS}, summary="Delete a silence")
def silences_delete(request, silence_id: int):
    """Removes the silence (to keep it as history, expire it instead)."""
    ensure_role(request.auth, OPERATOR)
    silence_delete(silence=get_object_or_404(Silence, pk=silence_id), actor=request.auth, via="api")
    return Status(204, None)


# --- rules --------------------------------------------------------------------------------------


def _rule_input(payload: AlertRuleIn) -> RuleInput:
    return RuleInput(**payload.dict())


@router.get(PREFIX + "/rules", response=list[AlertRuleOut], summary="List rules")
def rules_list(request):
    return list(rule_list())


@router.post(PREFIX + "/rules", response={201: AlertRuleOut, **WRITE_ERRORS}, summary="Create a rule")
def rules_create(request, payload: AlertRuleIn):
    ensure_role(request.auth, OPERATOR)
    return Status(201, rule_create(data=_rule_input(payload), actor=request.auth, via="api"))


@router.post(PREFIX + "/rules/preview", response={200: list[PreviewOut], **PREVIEW_ERRORS}, summary="Preview a rule")
def rules_preview(request, payload: AlertRuleIn):
    """The current value of each series the rule would watch, and the severity it would give now.
    A promql rule's query runs now: 400 on `expression` if it fails, 502 if its source does not answer."""
    return rule_preview(data=_rule_input(payload))


@router.post(PREFIX + "/rules/replay", response={200: AlertReplayOut, **PREVIEW_ERRORS}, summary="Replay a promql rule")
def rules_replay(request, payload: AlertRuleIn, replay_range: ReplayRange = "1h"):
    """When a promql rule would have been pending and firing over the last 1h, 6h or 24h, read from the
    expression's range query through the same state machine the evaluation uses. Same errors as preview."""
    return rule_replay_preview(data=_rule_input(payload), replay_range=replay_range)


@router.get(PREFIX + "/rules/{int:rule_id}", response={200: AlertRuleOut, **ERRORS}, summary="One rule")
def rules_get(request, rule_id: int):
    return get_object_or_404(AlertRule, pk=rule_id)


@router.get(PREFIX + "/rules/{int:rule_id}/preview", response={200: list[PreviewOut], **PREVIEW_ERRORS}, summary="Now")
def rules_preview_saved(request, rule_id: int):
    return rule_preview(data=rule_input_from(get_object_or_404(AlertRule, pk=rule_id)))


@router.get(PREFIX + "/rules/{int:rule_id}/replay", response={200: AlertReplayOut, **PREVIEW_ERRORS}, summary="Replay")
def rules_replay_saved(request, rule_id: int, replay_range: ReplayRange = "1h"):
    """A saved promql rule's what-if replay over the last 1h, 6h or 24h."""
    rule = get_object_or_404(AlertRule, pk=rule_id)
    return rule_replay_preview(data=rule_input_from(rule), replay_range=replay_range)


@router.put(PREFIX + "/rules/{int:rule_id}", response={200: AlertRuleOut, **WRITE_ERRORS}, summary="Change a rule")
def rules_update(request, rule_id: int, payload: AlertRuleIn):
    ensure_role(request.auth, OPERATOR)
    rule = get_object_or_404(AlertRule, pk=rule_id)
    return rule_update(rule=rule, data=_rule_input(payload), actor=request.auth, via="api")


@router.delete(PREFIX + "/rules/{int:rule_id}", response={204: None, **ERRORS}, summary="Delete a rule and its alerts")
def rules_delete(request, rule_id: int):
    ensure_role(request.auth, OPERATOR)
    rule_delete(rule=get_object_or_404(AlertRule, pk=rule_id), actor=request.auth, via="api")
    return Status(204, None)


# --- channels -----------------------------------------------------------------------------------


def _channel_input(payload: ChannelIn) -> ChannelInput:
    data = payload.dict()
    data["matchers"] = [dict(m) for m in data["matchers"]]
    data["severities"] = [str(s) for s in data["severities"]]
    return ChannelInput(**data)


@router.get(PREFIX + "/channels", response=list[ChannelOut], summary="List channels")
def channels_list(request):
    return list(channel_list())


@router.post(PREFIX + "/channels", response={201: ChannelOut, **WRITE_ERRORS}, summary="Create a channel")
def channels_create(request, payload: ChannelIn):
    ensure_role(request.auth, OPERATOR)
    return Status(201, channel_create(data=_channel_input(payload), actor=request.auth, via="api"))


@router.get(PREFIX + "/channels/{int:channel_id}", response={200: ChannelOut, **ERRORS}, summary="One channel")
def channels_get(request, channel_id: int):
    return get_object_or_404(Channel, pk=channel_id)


@router.put(PREFIX + "/channels/{int:channel_id}", response={200: ChannelOut, **WRITE_ERRORS}, summary="Change")
def channels_update(request, channel_id: int, payload: ChannelIn):
    ensure_role(request.auth, OPERATOR)
    channel = get_object_or_404(Channel, pk=channel_id)
    return channel_update(channel=channel, data=_channel_input(payload), actor=request.auth, via="api")


@router.delete(PREFIX + "/channels/{int:channel_id}", response={204: None, **ERRORS}, summary="Delete a channel")
def channels_delete(request, channel_id: int):
    ensure_role(request.auth, OPERATOR)
    channel_delete(channel=get_object_or_404(Channel, pk=channel_id), actor=request.auth, via="api")
    return Status(204, None)


@router.post(PREFIX + "/channels/{int:channel_id}/test", response={200: ChannelTestOut, **ERRORS}, summary="Test")
def channels_test(request, channel_id: int):
    """Sends a test message now. Success enables a channel that a 404/410/invalid_token disabled."""
    ensure_role(request.auth, OPERATOR)
    channel = get_object_or_404(Channel, pk=channel_id)
    outcome = channel_test_send(channel=channel, actor=request.auth, via="api")
    channel.refresh_from_db()
    return {"outcome": outcome.outcome, "detail": outcome.detail, "channel": channel}


@router.get(
    PREFIX + "/channels/{int:channel_id}/deliveries", response={200: list[DeliveryAttemptOut], **ERRORS}, summary="Log"
)
def channels_deliveries(request, channel_id: int, limit: int = Query(50, ge=1, le=500)):
    channel = get_object_or_404(Channel, pk=channel_id)
    return list(delivery_log(channel=channel, limit=limit))
