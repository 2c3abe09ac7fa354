"""API schemas of the scaling app: `<Thing>In` / `<Thing>Out` with explicit fields."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from ninja import Field, Schema

from core.schemas import Bool, Float, Id, Int, StrictSchema, choices_enum, omittable
from scaling.models import ScaledService, ScalingDecision, ScalingRule

SelectLiteral = Literal["Max", "Min", "Disabled"]
ServiceTier = choices_enum("ServiceTier", ScaledService.Tier)
RuleSource = choices_enum("RuleSource", ScalingRule.Source)
RuleTargetType = choices_enum("RuleTargetType", ScalingRule.TargetType)
EXPRESSION_HELP = (
    "For source promql: an expression giving an instant vector or a scalar (checked when saved: a 400 naming it); each "
    "evaluation needs exactly one element, else the rule proposes nothing and the decision says why."
)
PROMQL_SOURCE_HELP = "For source promql: a PromQL source's name; null or left out: Perfpilot's own store."


class PolicyIn(StrictSchema):
    type: Literal["Pods", "Percent"]
    value: Int = Field(..., ge=1, le=100_000)
    period_seconds: Int = Field(..., ge=1, le=1800)


class PolicyOut(Schema):
    type: str
    value: int
    period_seconds: int


class ServiceIn(StrictSchema):
    name: str = Field(..., min_length=1, max_length=100, description="lower-case letters, digits, - and _")
    description: str = Field("", max_length=300)
    tier: ServiceTier = ServiceTier.IMPORTANT
    executor_kind: str = Field(
        ..., max_length=20, description="celery, gunicorn, webhook, kubernetes, docker or shell (if enabled)"
    )
    executor_config: dict = Field(default_factory=dict, description="Secret settings are stored encrypted.")
    min_replicas: Int = Field(1, ge=0, le=10_000)
    max_replicas: Int = Field(10, ge=1, le=10_000)
    enabled: Bool = False
    dry_run: Bool = True
    paused: Bool = False
    scale_up_stabilization_seconds: Int = Field(0, ge=0, le=3600)
    scale_up_policies: list[PolicyIn] | None = None
    scale_up_select: SelectLiteral = "Max"
    scale_down_stabilization_seconds: Int = Field(300, ge=0, le=3600)
    scale_down_policies: list[PolicyIn] | None = None
    scale_down_select: SelectLiteral = "Max"


class ServicePatchIn(StrictSchema):
    name: str = omittable(min_length=1, max_length=100)
    description: str = omittable(max_length=300)
    tier: ServiceTier = omittable()
    executor_kind: str = omittable(max_length=20)
    executor_config: dict = omittable(description="Secret settings left out keep their stored values.")
    min_replicas: Int = omittable(ge=0, le=10_000)
    max_replicas: Int = omittable(ge=1, le=10_000)
    enabled: Bool = omittable()
    dry_run: Bool = omittable()
    paused: Bool = omittable()
    scale_up_stabilization_seconds: Int = omittable(ge=0, le=3600)
    scale_up_policies: list[PolicyIn] | None = Field(None, description="Left out or null: unchanged.")
    scale_up_select: SelectLiteral = omittable()
    scale_down_stabilization_seconds: Int = omittable(ge=0, le=3600)
    scale_down_policies: list[PolicyIn] | None = Field(None, description="Left out or null: unchanged.")
    scale_down_select: SelectLiteral = omittable()


class ScalingRuleIn(StrictSchema):
    source: RuleSource
    target_value: Float = Field(..., gt=0)
    series_id: Id | None = None
    target_id: Id | None = None
    metric_name: str = Field("", max_length=200)
    labels: dict[str, str] = Field(default_factory=dict)
    target_type: RuleTargetType = RuleTargetType.VALUE
    tolerance: Float = Field(0.1, ge=0, lt=1)
    enabled: Bool = True
    expression: str = Field("", max_length=4000, description=EXPRESSION_HELP)
    promql_source: str | None = Field(None, max_length=100, description=PROMQL_SOURCE_HELP)


class ScalingRuleCreateIn(ScalingRuleIn):
    name: str = Field(..., min_length=1, max_length=100)


class ScalingRulePatchIn(StrictSchema):
    source: RuleSource = omittable()
    target_value: Float = omittable(gt=0)
    series_id: Id | None = None
    target_id: Id | None = None
    metric_name: str = omittable(max_length=200)
    labels: dict[str, str] = omittable()
    target_type: RuleTargetType = omittable()
    tolerance: Float = omittable(ge=0, lt=1)
    enabled: Bool = omittable()
    expression: str = omittable(max_length=4000, description=EXPRESSION_HELP)
    promql_source: str | None = Field(None, max_length=100, description=PROMQL_SOURCE_HELP)


class ScalingRuleOut(Schema):
    id: int
    name: str
    source: str
    series_id: int | None
    target_id: int | None
    metric_name: str
    labels: dict
    target_value: float
    target_type: str
    tolerance: float
    enabled: bool
    expression: str
    promql_source: str | None = Field(..., description="The PromQL source's name; null: Perfpilot's own store.")

    @staticmethod
    def resolve_promql_source(obj: ScalingRule) -> str | None:
        return obj.promql_source.name if obj.promql_source_id else None


class ScheduleOverrideOut(Schema):
    id: int
    name: str
    cron: str
    min_replicas: int
    max_replicas: int
    enabled: bool


class ScheduleOverrideIn(StrictSchema):
    name: str = Field(..., min_length=1, max_length=100)
    cron: str = Field(..., max_length=100, examples=["* 9-17 * * mon-fri"])
    min_replicas: Int = Field(..., ge=0, le=10_000)
    max_replicas: Int = Field(..., ge=0, le=10_000)


class ServiceOut(Schema):
    id: int
    name: str
    description: str
    tier: str
    executor_kind: str
    executor_config: dict = Field(..., description="Public settings only; secrets are never shown back.")
    secret_fields_set: list[str]
    min_replicas: int
    max_replicas: int
    enabled: bool
    dry_run: bool
    paused: bool
    scale_up_stabilization_seconds: int
    scale_up_policies: list[PolicyOut]
    scale_up_select: str
    scale_down_stabilization_seconds: int
    scale_down_policies: list[PolicyOut]
    scale_down_select: str
    applied_replicas: int | None
    observed_replicas: int | None
    observed_at: datetime | None
    last_error: str
    last_error_at: datetime | None
    rules: list[ScalingRuleOut]
    schedules: list[ScheduleOverrideOut]

    @staticmethod
    def resolve_rules(obj: ScaledService) -> list:
        return list(obj.rules.all())

    @staticmethod
    def resolve_schedules(obj: ScaledService) -> list:
        return list(obj.schedules.all())


class DecisionOut(Schema):
    id: int
    service: str
    created_at: datetime
    trigger: str
    result: str
    executed: bool
    dry_run: bool
    current_replicas: int | None
    observed_replicas: int | None
    recommended_replicas: int | None
    desired_replicas: int | None
    confidence: float | None
    error: str
    explanation: list[str]
    proposals: list[dict]
    inputs: dict
    actor_name: str

    @staticmethod
    def resolve_service(obj: ScalingDecision) -> str:
        return obj.service.name


class ServiceStatusOut(Schema):
    service: str
    tier: str
    executor_kind: str
    enabled: bool
    paused: bool
    dry_run: bool
    current_replicas: int | None
    observed_replicas: int | None
    desired_replicas: int | None
    min_replicas: int
    max_replicas: int
    last_decision_at: datetime | None
    last_result: str | None
    why: str
    last_error: str


class EvaluateIn(StrictSchema):
    service: str | None = Field(None, description="One service by name (answered with its decision); none: all.")


class EvaluateQueuedOut(Schema):
    task_id: str | None
    services: int


class ScaleExecuteIn(StrictSchema):
    service: str
    replicas: Int = Field(..., ge=0, le=10_000)
    dry_run: Bool | None = Field(None, description="Default: the service's own dry-run flag.")


class ReplayStepOut(Schema):
    ts: datetime
    metric: float
    simulated_metric: float
    replicas: int


class ReplayOut(Schema):
    service: str
    rule: str
    target: float
    start: datetime
    end: datetime
    changes: int
    within_tolerance_share: float | None
    steps: list[ReplayStepOut]
