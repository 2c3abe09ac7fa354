"""Creating, changing and deleting scaled services, their rules and schedule overrides (audited)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from django.db import transaction

from core.errors import InvalidInput
from core.services import audit_record
from monitoring.models import PromQLSource
from monitoring.promql.errors import PromQLError
from monitoring.promql.sources import expression_check
from monitoring.selectors.series import series_get
from scaling.executors.base import executor_class, executor_classes
from scaling.models import ScaledService, ScalingRule, ScheduleOverride, SelectPolicy
from scaling.schedules import cron_validate

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,99}$")
MAX_REPLICAS_LIMIT = 10_000
POLICY_TYPES = ("Pods", "Percent")
MAX_EXPRESSION_LENGTH = 4000


def _name(value: str, what: str) -> str:
    value = (value or "").strip()
    if not NAME_RE.match(value):
        raise InvalidInput(
            f"A {what} name is 1-100 lower-case letters, digits, '-' or '_', starting with a letter or digit.",
            field="name",
        )
    return value


def _policies(value, where: str) -> list[dict]:
    if not isinstance(value, list) or not value:
        raise InvalidInput("Give at least one policy: {type: Pods|Percent, value, period_seconds}.", field=where)
    cleaned = []
    for index, policy in enumerate(value):
        if not isinstance(policy, dict):
            raise InvalidInput(f"Policy {index + 1} must be an object.", field=where)
        kind, amount, period = policy.get("type"), policy.get("value"), policy.get("period_seconds")
        if kind not in POLICY_TYPES:
            raise InvalidInput(f"Policy {index + 1}: type must be Pods or Percent.", field=where)
        if isinstance(amount, bool) or not isinstance(amount, int) or amount < 1:
            raise InvalidInput(f"Policy {index + 1}: value must be a whole number of at least 1.", field=where)
        if isinstance(period, bool) or not isinstance(period, int) or not 1 <= period <= 1800:
            raise InvalidInput(f"Policy {index + 1}: period_seconds must be between 1 and 1800.", field=where)
        cleaned.append({"type": kind, "value": amount, "period_seconds": period})
    return cleaned


@dataclass
class ServiceInput:
    name: str
    executor_kind: str
    executor_config: dict = field(default_factory=dict)
    description: str = ""
    tier: str = ScaledService.Tier.IMPORTANT
    min_replicas: int = 1
    max_replicas: int = 10
    enabled: bool = False
    dry_run: bool = True
    paused: bool = False
    scale_up_stabilization_seconds: int = 0
    scale_up_policies: list | None = None
    scale_up_select: str = SelectPolicy.MAX
    scale_down_stabilization_seconds: int = 300
    scale_down_policies: list | None = None
    scale_down_select: str = SelectPolicy.MAX


_SERVICE_FIELDS = (
    "description",
    "tier",
    "min_replicas",
    "max_replicas",
    "enabled",
    "dry_run",
    "paused",
    "scale_up_stabilization_seconds",
    "scale_up_policies",
    "scale_up_select",
    "scale_down_stabilization_seconds",
    "scale_down_policies",
    "scale_down_select",
)


def _apply_service_fields(service: ScaledService, values: dict) -> None:
    for name in _SERVICE_FIELDS:
        if name in values and values[name] is not None:
            setattr(service, name, values[name])
    if service.tier not in ScaledService.Tier.values:
        raise InvalidInput(f"tier must be one of {', '.join(ScaledService.Tier.values)}.", field="tier")
    if not 0 <= service.min_replicas <= MAX_REPLICAS_LIMIT:
        raise InvalidInput(f"min_replicas must be between 0 and {MAX_REPLICAS_LIMIT}.", field="min_replicas")
    if not 1 <= service.max_replicas <= MAX_REPLICAS_LIMIT:
        raise InvalidInput(f"max_replicas must be between 1 and {MAX_REPLICAS_LIMIT}.", field="max_replicas")
    if service.max_replicas < service.min_replicas:
        raise InvalidInput("max_replicas cannot be below min_replicas.", field="max_replicas")
    for direction in ("up", "down"):
        seconds = getattr(service, f"scale_{direction}_stabilization_seconds")
        if not 0 <= seconds <= 3600:
            raise InvalidInput(
                "A stabilization window is between 0 and 3600 seconds.",
                field=f"scale_{direction}_stabilization_seconds",
            )
        if getattr(service, f"scale_{direction}_select") not in SelectPolicy.values:
            raise InvalidInput("select must be Max, Min or Disabled.", field=f"scale_{direction}_select")
        name = f"scale_{direction}_policies"
        setattr(service, name, _policies(getattr(service, name), name))
    if len(service.description) > 300:
        raise InvalidInput("The description has at most 300 characters.", field="description")


def _apply_executor(service: ScaledService, kind: str, config: dict, *, keep_secrets: bool) -> None:
    if kind not in executor_classes():
        known = ", ".join(sorted(executor_classes()))
        raise InvalidInput(f"Unknown executor kind {kind!r}; choose one of {known}.", field="executor_kind")
    cls = executor_class(kind)
    if not isinstance(config, dict):
        raise InvalidInput("executor_config must be a JSON object.", field="executor_config")
    cleaned = cls.validate_config(config)
    secret_names = cls.secret_names()
    public = {k: v for k, v in cleaned.items() if k not in secret_names}
    secrets = {k: v for k, v in cleaned.items() if k in secret_names}
    if keep_secrets and kind == service.executor_kind:
        # A blank secret keeps the stored one: secrets are never shown back, so forms send them empty.
        secrets = {**service.secrets, **secrets}
    cls.check_required({**public, **secrets})
    service.executor_kind = kind
    service.executor_config = public
    service.secrets = secrets


@transaction.atomic
def service_create(*, data: ServiceInput, actor, via: str) -> ScaledService:
    name = _name(data.name, "service")
    if ScaledService.objects.filter(name=name).exists():
        raise InvalidInput(f"A service named {name!r} exists already.", field="name")
    service = ScaledService(name=name)
    values = {k: getattr(data, k) for k in _SERVICE_FIELDS}
    values["scale_up_policies"] = data.scale_up_policies or service.scale_up_policies
    values["scale_down_policies"] = data.scale_down_policies or service.scale_down_policies
    _apply_service_fields(service, values)
    _apply_executor(service, data.executor_kind, data.executor_config, keep_secrets=False)
    service.save()
    audit_record(
        actor=actor, via=via, action="scaling.service.create", object_repr=name, detail={"kind": data.executor_kind}
    )
    return service


@transaction.atomic
def service_update(*, service: ScaledService, changes: dict, actor, via: str) -> ScaledService:
    """Apply the given fields. Secret executor settings left blank keep their stored values."""
    if "name" in changes and changes["name"] is not None and changes["name"] != service.name:
        name = _name(changes["name"], "service")
        if ScaledService.objects.filter(name=name).exclude(pk=service.pk).exists():
            raise InvalidInput(f"A service named {name!r} exists already.", field="name")
        service.name = name
    _apply_service_fields(service, changes)
    if changes.get("executor_kind") is not None or changes.get("executor_config") is not None:
        kind = changes.get("executor_kind") or service.executor_kind
        config = changes.get("executor_config")
        if config is None:
            config = service.executor_config
        _apply_executor(service, kind, config, keep_secrets=True)
    service.save()
    fields = sorted(k for k, v in changes.items() if v is not None and k != "executor_config")
    if changes.get("executor_config") is not None:
        fields.append("executor_config")
    audit_record(
        actor=actor, via=via, action="scaling.service.update", object_repr=service.name, detail={"fields": fields}
    )
    return service


@transaction.atomic
def service_delete(*, service: ScaledService, actor, via: str) -> None:
    audit_record(actor=actor, via=via, action="scaling.service.delete", object_repr=service.name)
    service.delete()


@transaction.atomic
def service_set_state(*, service: ScaledService, actor, via: str, **flags: bool) -> ScaledService:
    """Enable/disable, pause/resume, dry-run on/off."""
    for name, value in flags.items():
        if name not in ("enabled", "paused", "dry_run"):
            raise InvalidInput(f"Unknown flag {name!r}.", field=name)
        setattr(service, name, bool(value))
    service.save(update_fields=[*flags, "updated_at"])
    audit_record(actor=actor, via=via, action="scaling.service.state", object_repr=service.name, detail=dict(flags))
    return service


# --- rules -----------------------------------------------------------------------------------


@dataclass
class RuleInput:
    source: str
    target_value: float
    series_id: int | None = None
    target_id: int | None = None
    metric_name: str = ""
    labels: dict | None = None
    target_type: str = ScalingRule.TargetType.VALUE
    tolerance: float = 0.1
    enabled: bool = True
    expression: str = ""
    promql_source: str | None = None  # a PromQLSource's name; None: Perfpilot's own store


def _validate_expression(rule: ScalingRule) -> None:
    """A PromQL rule's expression parses and gives an instant vector or a scalar (one number is checked at
    each evaluation, as KEDA does); over Perfpilot's store, the engine also supports all it uses. A 400
    naming `expression`, as for alert rules (alerts.services.manage)."""
    expression = rule.expression
    if not expression:
        raise InvalidInput("A PromQL rule needs an expression.", field="expression")
    if len(expression) > MAX_EXPRESSION_LENGTH:
        raise InvalidInput(f"The expression has at most {MAX_EXPRESSION_LENGTH} characters.", field="expression")
    try:
        expression_check(expression, source=rule.promql_source)
    except PromQLError as exc:
        raise InvalidInput(f"Not a usable PromQL expression: {exc}", field="expression") from exc


def _validate_rule(rule: ScalingRule) -> None:
    if rule.source not in ScalingRule.Source.values:
        raise InvalidInput(f"source must be one of {', '.join(ScalingRule.Source.values)}.", field="source")
    if rule.source == ScalingRule.Source.PROMQL:
        _validate_expression(rule)
        for name in ("target_id", "metric_name", "labels"):
            if getattr(rule, name):
                raise InvalidInput(f"{name} is for built-in sources; a PromQL rule reads its expression.", field=name)
    elif rule.expression or rule.promql_source_id:
        field_name = "expression" if rule.expression else "promql_source"
        raise InvalidInput(f"{field_name} is only for source 'promql'.", field=field_name)
    if rule.source == ScalingRule.Source.SERIES:
        if not rule.series_id:
            raise InvalidInput("A rule on a collected series needs series_id.", field="series_id")
        if series_get(series_id=rule.series_id) is None:
            raise InvalidInput(f"No series with id {rule.series_id}.", field="series_id")
    elif rule.series_id:
        raise InvalidInput("series_id is only for source 'series'; built-ins find their series.", field="series_id")
    if not isinstance(rule.labels, dict) or not all(isinstance(v, str) for v in rule.labels.values()):
        raise InvalidInput('labels must be an object of strings, e.g. {"queue": "default"}.', field="labels")
    if rule.target_value is None or not math.isfinite(rule.target_value) or rule.target_value <= 0:
        raise InvalidInput("The target value must be a number above 0.", field="target_value")
    if rule.target_type not in ScalingRule.TargetType.values:
        raise InvalidInput("target_type must be value or average.", field="target_type")
    if rule.tolerance is None or not 0 <= rule.tolerance < 1:
        raise InvalidInput("The tolerance is a fraction from 0 to below 1 (0.1 = 10 %).", field="tolerance")
    if len(rule.metric_name) > 200:
        raise InvalidInput("metric_name has at most 200 characters.", field="metric_name")


_RULE_FIELDS = (
    "source",
    "target_value",
    "series_id",
    "target_id",
    "metric_name",
    "labels",
    "target_type",
    "tolerance",
    "enabled",
    "expression",
)


def _promql_source(name: str | None) -> PromQLSource | None:
    if not name:
        return None
    source = PromQLSource.objects.filter(name=name).first()
    if source is None:
        raise InvalidInput(f"No PromQL source named {name!r}.", field="promql_source")
    return source


@transaction.atomic
def rule_upsert(
    *, service: ScaledService, name: str, data: dict, actor, via: str, partial: bool = False
) -> ScalingRule:
    """Create the rule `name` of the service, or change it. `partial` keeps fields not given."""
    name = _name(name, "rule")
    rule = ScalingRule.objects.filter(service=service, name=name).first()
    created = rule is None
    if created:
        if "source" not in data or "target_value" not in data:
            raise InvalidInput("A new rule needs source and target_value.", field="source")
        rule = ScalingRule(service=service, name=name)
    elif not partial:
        rule.series_id = rule.target_id = rule.promql_source = None
        rule.metric_name, rule.labels, rule.tolerance, rule.target_type = "", {}, 0.1, ScalingRule.TargetType.VALUE
        rule.expression = ""
    for key in _RULE_FIELDS:
        if key in data and (data[key] is not None or key in ("series_id", "target_id")):
            setattr(rule, key, data[key])
    if "promql_source" in data:  # by name; null or empty: Perfpilot's own store
        rule.promql_source = _promql_source(data["promql_source"])
    rule.metric_name = (rule.metric_name or "").strip()
    rule.expression = (rule.expression or "").strip()
    rule.labels = rule.labels or {}
    _validate_rule(rule)
    rule.save()
    audit_record(
        actor=actor,
        via=via,
        action="scaling.rule.create" if created else "scaling.rule.update",
        object_repr=str(rule),
        detail={
            "source": rule.source,
            "target_value": rule.target_value,
            **({"expression": rule.expression} if rule.expression else {}),
        },
    )
    return rule


@transaction.atomic
def rule_delete(*, rule: ScalingRule, actor, via: str) -> None:
    audit_record(actor=actor, via=via, action="scaling.rule.delete", object_repr=str(rule))
    rule.delete()


# --- schedule overrides ----------------------------------------------------------------------


@transaction.atomic
def schedule_create(
    *, service: ScaledService, name: str, cron: str, min_replicas: int, max_replicas: int, actor, via: str
) -> ScheduleOverride:
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise InvalidInput("A schedule needs a name of at most 100 characters.", field="name")
    cron = cron_validate(cron or "")
    if not 0 <= min_replicas <= max_replicas or max_replicas > MAX_REPLICAS_LIMIT:
        raise InvalidInput("Schedule replicas need 0 ≤ min ≤ max ≤ 10000.", field="max_replicas")
    override = ScheduleOverride.objects.create(
        service=service, name=name, cron=cron, min_replicas=min_replicas, max_replicas=max_replicas
    )
    audit_record(actor=actor, via=via, action="scaling.schedule.create", object_repr=str(override))
    return override


@transaction.atomic
def schedule_delete(*, override: ScheduleOverride, actor, via: str) -> None:
    audit_record(actor=actor, via=via, action="scaling.schedule.delete", object_repr=str(override))
    override.delete()
