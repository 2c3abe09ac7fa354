"""Writes people make: rules, channels and silences (create, update, delete), acknowledging and
resolving alerts. Each validates its input (InvalidInput names the field) and is audited."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from django.db import transaction
from django.utils import timezone

from alerts.models import (
    EVENT_KINDS,
    OPTIONAL_THRESHOLD_KINDS,
    THRESHOLD_KINDS,
    Alert,
    AlertRule,
    AlertState,
    Channel,
    Severity,
    Silence,
)
from alerts.services import state as sm
from alerts.services.matching import matchers_validate
from core import outbound
from core.errors import InvalidInput
from core.services import audit_record

MAX_SECONDS = 30 * 86_400
MAX_EXPRESSION_LENGTH = 10_000
SLACK_HOSTS = ("hooks.slack.com", "hooks.slack-gov.com")


def _label_dict(value: object, *, field_name: str) -> dict[str, str]:
    if value in (None, ""):
        return {}
    if not isinstance(value, dict):
        raise InvalidInput("Labels must be an object of name: value.", field=field_name)
    cleaned = {}
    for key, item in value.items():
        key = str(key).strip()
        if not key or not key.replace("_", "a").isalnum():
            raise InvalidInput(f"Label name {key!r} must be letters, digits and _.", field=field_name)
        cleaned[key] = str(item)
    return cleaned


def _seconds(value: int, *, field_name: str, minimum: int = 0) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value <= MAX_SECONDS:
        raise InvalidInput(f"Must be a whole number of seconds from {minimum} to {MAX_SECONDS}.", field=field_name)
    return value


def _unique_name(name: str, *, model, instance, noun: str) -> str:
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise InvalidInput(f"A {noun} needs a name of at most 100 characters.", field="name")
    if model.objects.filter(name=name).exclude(pk=getattr(instance, "pk", None)).exists():
        raise InvalidInput(f"A {noun} named “{name}” exists already.", field="name")
    return name


# --- rules --------------------------------------------------------------------------------------


@dataclass
class RuleInput:
    name: str
    kind: str
    metric: str = ""
    target_id: int | None = None
    series_labels: dict = field(default_factory=dict)
    expression: str = ""
    promql_source_id: int | None = None
    warning_threshold: float | None = None
    critical_threshold: float | None = None
    forecast_limit: float | None = None
    severity: str = Severity.CRITICAL
    window_seconds: int = 300
    for_seconds: int = 0
    keep_firing_for_seconds: int = 0
    eval_interval_seconds: int = 30
    labels: dict = field(default_factory=dict)
    summary: str = ""
    runbook: str = ""
    enabled: bool = True


def rule_validate(data: RuleInput, *, rule: AlertRule | None = None, check_name: bool = True) -> RuleInput:
    from monitoring.models import Target

    if check_name:
        data.name = _unique_name(data.name, model=AlertRule, instance=rule, noun="rule")
    if data.kind not in AlertRule.Kind.values:
        raise InvalidInput(f"Unknown kind; choose one of {', '.join(AlertRule.Kind.values)}.", field="kind")
    data.metric = (data.metric or "").strip()
    if data.kind == AlertRule.Kind.PROMQL:
        _promql_validate(data)
    else:
        data.expression, data.promql_source_id = "", None
        if data.kind not in EVENT_KINDS and not data.metric:
            raise InvalidInput("This kind of rule watches a metric: name it.", field="metric")
    if data.target_id is not None and not Target.objects.filter(pk=data.target_id).exists():
        raise InvalidInput(f"There is no target {data.target_id}.", field="target_id")
    if data.severity not in Severity.values:
        raise InvalidInput("Severity must be warning or critical.", field="severity")
    if data.kind in THRESHOLD_KINDS | OPTIONAL_THRESHOLD_KINDS:
        warning, critical = data.warning_threshold, data.critical_threshold
        if warning is None and critical is None and data.kind not in OPTIONAL_THRESHOLD_KINDS:
            raise InvalidInput("Set a warning or a critical threshold (or both).", field="critical_threshold")
        if warning is not None and critical is not None:
            below = data.kind in (AlertRule.Kind.THRESHOLD_BELOW, AlertRule.Kind.FORECAST)
            if (below and critical > warning) or (not below and critical < warning):
                word = "at or below" if below else "at or above"
                raise InvalidInput(
                    f"The critical threshold must be {word} the warning one.", field="critical_threshold"
                )
    if data.kind == AlertRule.Kind.FORECAST and data.forecast_limit is None:
        raise InvalidInput("A forecast rule needs the limit it watches.", field="forecast_limit")
    _seconds(data.window_seconds, field_name="window_seconds", minimum=1)
    _seconds(data.for_seconds, field_name="for_seconds")
    _seconds(data.keep_firing_for_seconds, field_name="keep_firing_for_seconds")
    _seconds(data.eval_interval_seconds, field_name="eval_interval_seconds", minimum=1)
    data.labels = _label_dict(data.labels, field_name="labels")
    data.series_labels = _label_dict(data.series_labels, field_name="series_labels")
    if len(data.summary or "") > 300:
        raise InvalidInput("The summary has at most 300 characters.", field="summary")
    return data


def _promql_validate(data: RuleInput) -> None:
    """A PromQL rule: the expression parses and gives a vector or a scalar (422 naming `expression`),
    read from an existing source or, with none, from Perfpilot's store, whose engine must support it."""
    from monitoring.models import PromQLSource
    from monitoring.promql.errors import PromQLError
    from monitoring.promql.sources import expression_check

    data.expression = (data.expression or "").strip()
    if not data.expression:
        raise InvalidInput("A PromQL rule needs an expression.", field="expression")
    if len(data.expression) > MAX_EXPRESSION_LENGTH:
        raise InvalidInput(f"The expression has at most {MAX_EXPRESSION_LENGTH} characters.", field="expression")
    source = None
    if data.promql_source_id is not None:
        source = PromQLSource.objects.filter(pk=data.promql_source_id).first()
        if source is None:
            raise InvalidInput(f"There is no PromQL source {data.promql_source_id}.", field="promql_source_id")
    try:
        expression_check(data.expression, source=source)
    except PromQLError as exc:
        raise InvalidInput(str(exc), field="expression") from exc
    # The expression selects the series (as series fields do for the other kinds, which drop `expression`).
    data.metric, data.target_id, data.series_labels = "", None, {}


@transaction.atomic
def rule_create(*, data: RuleInput, actor, via: str, builtin_key: str | None = None) -> AlertRule:
    data = rule_validate(data)
    rule = AlertRule.objects.create(**asdict(data), builtin_key=builtin_key)
    audit_record(actor=actor, via=via, action="alerts.rule.create", object_repr=rule.name)
    return rule


@transaction.atomic
def rule_update(*, rule: AlertRule, data: RuleInput, actor, via: str) -> AlertRule:
    data = rule_validate(data, rule=rule)
    for name, value in asdict(data).items():
        setattr(rule, name, value)
    rule.last_evaluated_at = None  # evaluate the new definition at the next tick
    rule.save()
    audit_record(actor=actor, via=via, action="alerts.rule.update", object_repr=rule.name)
    return rule


@transaction.atomic
def rule_delete(*, rule: AlertRule, actor, via: str) -> None:
    name = rule.name
    rule.delete()
    audit_record(actor=actor, via=via, action="alerts.rule.delete", object_repr=name)


def rule_input_from(rule: AlertRule) -> RuleInput:
    return RuleInput(**{name: getattr(rule, name) for name in RuleInput.__dataclass_fields__})


# --- channels -----------------------------------------------------------------------------------


@dataclass
class ChannelInput:
    name: str
    kind: str
    url: str = ""  # blank on update keeps the stored URL
    enabled: bool = True
    severities: list = field(default_factory=lambda: [Severity.WARNING, Severity.CRITICAL])
    matchers: list = field(default_factory=list)
    group_by: list = field(default_factory=lambda: ["alertname"])
    group_wait_seconds: int = 30
    group_interval_seconds: int = 300
    repeat_interval_seconds: int = 4 * 3600
    send_resolved: bool = True


def channel_validate(data: ChannelInput, *, channel: Channel | None = None) -> ChannelInput:
    data.name = _unique_name(data.name, model=Channel, instance=channel, noun="channel")
    if data.kind not in Channel.Kind.values:
        raise InvalidInput("Kind must be slack or webhook.", field="kind")
    data.url = (data.url or "").strip()
    if data.url or channel is None:
        split = urlsplit(data.url)
        if split.scheme not in ("http", "https") or not split.hostname:
            raise InvalidInput("The URL must be an http:// or https:// URL with a host.", field="url")
        if len(data.url) > 2000:
            raise InvalidInput("The URL is too long.", field="url")
        try:  # the outbound policy at save time; delivery checks again at every connect
            outbound.check_url_at_save(data.url, what="The URL's host")
        except outbound.OutboundRefused as exc:
            raise outbound.refused_input(exc, field="url") from exc
    if not isinstance(data.severities, list) or any(s not in Severity.values for s in data.severities):
        raise InvalidInput("Severities must be a list of warning and/or critical.", field="severities")
    data.matchers = matchers_validate(data.matchers, field="matchers")
    if not isinstance(data.group_by, list) or not all(isinstance(x, str) and x.strip() for x in data.group_by):
        raise InvalidInput("group_by must be a list of label names.", field="group_by")
    data.group_by = [x.strip() for x in data.group_by]
    _seconds(data.group_wait_seconds, field_name="group_wait_seconds")
    _seconds(data.group_interval_seconds, field_name="group_interval_seconds")
    _seconds(data.repeat_interval_seconds, field_name="repeat_interval_seconds", minimum=60)
    return data


@transaction.atomic
def channel_create(*, data: ChannelInput, actor, via: str) -> Channel:
    data = channel_validate(data)
    fields = asdict(data)
    url = fields.pop("url")
    channel = Channel(**fields)
    channel.url = url
    channel.save()
    audit_record(actor=actor, via=via, action="alerts.channel.create", object_repr=channel.name)
    return channel


@transaction.atomic
def channel_update(*, channel: Channel, data: ChannelInput, actor, via: str) -> Channel:
    data = channel_validate(data, channel=channel)
    fields = asdict(data)
    url = fields.pop("url")
    for name, value in fields.items():
        setattr(channel, name, value)
    if url:
        channel.url = url
    channel.save()
    audit_record(actor=actor, via=via, action="alerts.channel.update", object_repr=channel.name)
    return channel


@transaction.atomic
def channel_delete(*, channel: Channel, actor, via: str) -> None:
    name = channel.name
    channel.delete()
    audit_record(actor=actor, via=via, action="alerts.channel.delete", object_repr=name)


# --- silences -----------------------------------------------------------------------------------


@dataclass
class SilenceInput:
    matchers: list
    ends_at: datetime
    comment: str
    starts_at: datetime | None = None


def _silence_fields(data: SilenceInput) -> dict:
    matchers = matchers_validate(data.matchers, allow_empty=False)
    starts_at = data.starts_at or timezone.now()
    comment = (data.comment or "").strip()
    if not comment:
        raise InvalidInput("Say why: a silence needs a comment.", field="comment")
    if data.ends_at <= starts_at:
        raise InvalidInput("The end must be after the start.", field="ends_at")
    if data.ends_at - starts_at > timedelta(days=365):
        raise InvalidInput("A silence lasts at most a year.", field="ends_at")
    return {"matchers": matchers, "starts_at": starts_at, "ends_at": data.ends_at, "comment": comment}


@transaction.atomic
def silence_create(*, data: SilenceInput, actor, via: str) -> Silence:
    person = actor if getattr(actor, "is_authenticated", False) else None
    silence = Silence.objects.create(
        **_silence_fields(data),
        created_by=person,
        created_by_name=person.get_username() if person else "system",
    )
    audit_record(actor=actor, via=via, action="alerts.silence.create", object_repr=str(silence))
    return silence


@transaction.atomic
def silence_update(*, silence: Silence, data: SilenceInput, actor, via: str) -> Silence:
    for name, value in _silence_fields(data).items():
        setattr(silence, name, value)
    silence.save()
    audit_record(actor=actor, via=via, action="alerts.silence.update", object_repr=str(silence))
    return silence


@transaction.atomic
def silence_expire(*, silence: Silence, actor, via: str) -> Silence:
    """End a silence now (it stays in the list, as history)."""
    now = timezone.now()
    if silence.ends_at > now:
        silence.ends_at = max(now, silence.starts_at)
        silence.save(update_fields=["ends_at"])
    audit_record(actor=actor, via=via, action="alerts.silence.expire", object_repr=str(silence))
    return silence


@transaction.atomic
def silence_delete(*, silence: Silence, actor, via: str) -> None:
    text = str(silence)
    silence.delete()
    audit_record(actor=actor, via=via, action="alerts.silence.delete", object_repr=text)


# --- alerts -------------------------------------------------------------------------------------


@transaction.atomic
def alert_ack(*, alert: Alert, actor, comment: str, via: str) -> Alert:
    if alert.state not in (AlertState.PENDING, AlertState.FIRING):
        raise InvalidInput("Only pending or firing alerts can be acknowledged.", field="state")
    alert.acked_by = actor
    alert.acked_at = timezone.now()
    alert.ack_comment = (comment or "").strip()[:2000]
    alert.save(update_fields=["acked_by", "acked_at", "ack_comment", "updated_at"])
    audit_record(actor=actor, via=via, action="alerts.alert.ack", object_repr=str(alert), detail={"comment": comment})
    return alert


@transaction.atomic
def alert_resolve(*, alert: Alert, actor, via: str) -> Alert:
    from alerts.services.evaluation import alert_apply, alert_snapshot

    alert = Alert.objects.select_for_update().select_related("rule").get(pk=alert.pk)
    if alert.state not in (AlertState.PENDING, AlertState.FIRING):
        raise InvalidInput("Only pending or firing alerts can be resolved.", field="state")
    now = timezone.now()
    alert_apply(alert=alert, transition=sm.resolve(alert_snapshot(alert), now=now), now=now)
    audit_record(actor=actor, via=via, action="alerts.alert.resolve", object_repr=str(alert))
    return alert
