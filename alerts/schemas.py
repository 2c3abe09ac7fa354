"""API schemas of the alerts app: explicit fields in and out; secrets (webhook URLs) never out."""

from __future__ import annotations

from datetime import datetime

from ninja import Field, Schema

from alerts.models import AlertRule, Channel, Severity
from core.schemas import Bool, Float, Id, Int, StrictSchema, choices_enum

SECONDS = {"ge": 0, "le": 30 * 86_400}
AlertRuleKind = choices_enum("AlertRuleKind", AlertRule.Kind)
ChannelKind = choices_enum("ChannelKind", Channel.Kind)


class MatcherIn(StrictSchema):
    name: str = Field(..., min_length=1, max_length=100)
    op: str = Field("=", pattern=r"^(=|!=|=~|!~)$")
    value: str = Field("", max_length=500)


class AlertOut(Schema):
    id: int
    rule_id: int
    rule: str
    title: str
    state: str
    severity: str
    value: float | None
    threshold: float | None
    labels: dict
    target: str
    metric: str
    message: str
    since: datetime | None
    fired_at: datetime | None
    resolved_at: datetime | None
    acked_by: str | None
    acked_at: datetime | None
    ack_comment: str
    silenced: bool
    silence_id: int | None
    inhibited: bool
    source: str = Field(description="perfpilot, or external: sent by Prometheus through the Alertmanager API")
    annotations: dict = Field(description="An external alert's annotations (summary, description, runbook_url)")
    generator_url: str = Field(description="An external alert's link to its expression in Prometheus")
    starts_at: datetime | None
    ends_at: datetime | None = Field(description="An external alert resolves at this time unless it is resent")


class AlertChangeOut(Schema):
    from_state: str
    to_state: str
    severity: str
    value: float | None
    threshold: float | None
    note: str
    at: datetime


class AlertDetailOut(AlertOut):
    history: list[AlertChangeOut]
    runbook: str


class AckIn(StrictSchema):
    comment: str = Field("", max_length=2000)


class AlertRuleIn(StrictSchema):
    name: str = Field(..., min_length=1, max_length=100)
    kind: AlertRuleKind
    metric: str = Field("", max_length=200, description="The metric watched; not for event and promql rules.")
    target_id: Id | None = None
    series_labels: dict[str, str] = Field(default_factory=dict)
    expression: str = Field(
        "",
        max_length=10_000,
        description=(
            "promql rules only (required): a PromQL expression giving an instant vector or a scalar, checked at "
            "save (400 naming `expression`); over Perfpilot's store it must use only what its engine supports. "
            "Every element of its result is one alert, labelled by the element's labels and the rule's."
        ),
    )
    promql_source_id: Id | None = Field(
        None, description="promql rules: the PromQL source the expression is read from; none = Perfpilot's store."
    )
    warning_threshold: Float | None = Field(
        None, description="promql rules: optional; with thresholds an element breaches at or above them."
    )
    critical_threshold: Float | None = Field(
        None, description="At or above the warning one (at or below for threshold_below and forecast)."
    )
    forecast_limit: Float | None = None
    severity: Severity = Field(
        Severity.CRITICAL, description="What absence, event and promql rules without thresholds fire at."
    )
    window_seconds: Int = Field(300, ge=1, le=30 * 86_400)
    for_seconds: Int = Field(0, **SECONDS)
    keep_firing_for_seconds: Int = Field(0, **SECONDS)
    eval_interval_seconds: Int = Field(30, ge=1, le=86_400)
    labels: dict[str, str] = Field(default_factory=dict)
    summary: str = Field("", max_length=300)
    runbook: str = Field("", max_length=10_000)
    enabled: Bool = True


class AlertRuleOut(Schema):
    id: int
    name: str
    kind: str
    enabled: bool
    metric: str
    target_id: int | None
    series_labels: dict
    expression: str
    promql_source_id: int | None
    warning_threshold: float | None
    critical_threshold: float | None
    forecast_limit: float | None
    severity: str
    window_seconds: int
    for_seconds: int
    keep_firing_for_seconds: int
    eval_interval_seconds: int
    labels: dict
    summary: str
    runbook: str
    builtin_key: str | None
    last_evaluated_at: datetime | None
    last_error: str


class PreviewOut(Schema):
    series: str
    target: str
    value: float | None
    at: datetime | None
    severity: str | None
    labels: dict | None = Field(None, description="promql rules: the labels the alert would carry.")


class AlertReplayEpisodeOut(Schema):
    labels: dict
    pending_from: datetime
    firing_from: datetime | None = Field(None, description="None: it recovered before `for` elapsed.")
    resolved_at: datetime | None = Field(
        None, description="When it resolved (or went back to inactive); None: still up."
    )


class AlertReplayOut(Schema):
    range: str
    start: datetime
    end: datetime
    step_seconds: int
    firings: int = Field(..., description="Episodes that reached firing.")
    episodes: list[AlertReplayEpisodeOut]


class ChannelIn(StrictSchema):
    name: str = Field(..., min_length=1, max_length=100)
    kind: ChannelKind
    url: str = Field("", max_length=2000, description="Stored encrypted, never shown back; blank on update keeps it.")
    enabled: Bool = True
    severities: list[Severity] = Field(default_factory=lambda: [Severity.WARNING, Severity.CRITICAL])
    matchers: list[MatcherIn] = Field(default_factory=list)
    group_by: list[str] = Field(default_factory=lambda: ["alertname"])
    group_wait_seconds: Int = Field(30, **SECONDS, description="0 sends at once.")
    group_interval_seconds: Int = Field(300, **SECONDS)
    repeat_interval_seconds: Int = Field(4 * 3600, ge=60, le=30 * 86_400)
    send_resolved: Bool = True


class ChannelOut(Schema):
    id: int
    name: str
    kind: str
    enabled: bool
    url: str = Field(..., description="Only the scheme and host; the webhook URL is a secret.")
    severities: list[str]
    matchers: list[dict]
    group_by: list[str]
    group_wait_seconds: int
    group_interval_seconds: int
    repeat_interval_seconds: int
    send_resolved: bool
    disabled_reason: str
    disabled_at: datetime | None

    @staticmethod
    def resolve_url(obj: Channel) -> str:
        return obj.url_display  # never the decrypted URL


class DeliveryAttemptOut(Schema):
    id: int
    notification_id: int
    attempt: int
    outcome: str
    status_code: int | None
    response_head: str
    error: str
    latency_ms: float
    retry_in_seconds: float | None
    at: datetime


class ChannelTestOut(Schema):
    outcome: str
    detail: str
    channel: ChannelOut


class SilenceIn(StrictSchema):
    matchers: list[MatcherIn] = Field(..., min_length=1)
    starts_at: datetime | None = None
    ends_at: datetime
    comment: str = Field(..., min_length=1, max_length=2000)


class SilenceOut(Schema):
    id: int
    matchers: list[dict]
    starts_at: datetime
    ends_at: datetime
    comment: str
    created_by: str
    created_at: datetime
    active: bool
