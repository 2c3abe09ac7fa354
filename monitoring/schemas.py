from __future__ import annotations

from datetime import datetime

from ninja import Field, Schema
from pydantic import BaseModel, ConfigDict

from core.schemas import Bool, Float, Int, StrictSchema, Text, choices_enum, omittable
from monitoring.models import DEFAULT_GROUP, GROUP_PATTERN, Series, Target

METRIC_PATTERN = r"^[a-zA-Z_:][a-zA-Z0-9_:.]*$"
GROUP_DESCRIPTION = (
    "Collector group: its collections go to the queue `collect` (group `default`) or `collect.<group>`, "
    "served by the workers started with `-Q` naming it."
)
TargetKind = choices_enum("TargetKind", Target.Kind)
TargetStatus = choices_enum("TargetStatus", Target.Status)
SeriesKind = choices_enum("SeriesKind", Series.Kind)


class TargetIn(StrictSchema):
    name: str = Field(..., min_length=1, max_length=100)
    kind: TargetKind
    url: str = Field("", max_length=2000, description="DSN or URL, with password if needed. Stored encrypted.")
    interval_seconds: Int = Field(10, ge=1, le=86_400)
    timeout_seconds: Int = Field(5, ge=1, le=300)
    enabled: Bool = True
    pinned: Bool = Field(False, description="Show its charts on the Overview.")
    options: dict = Field(default_factory=dict)
    group: str = Field(DEFAULT_GROUP, min_length=1, max_length=40, pattern=GROUP_PATTERN, description=GROUP_DESCRIPTION)


class TargetPatchIn(StrictSchema):
    name: str = omittable(min_length=1, max_length=100)
    url: str = omittable(max_length=2000, description="Leave out to keep the stored URL.")
    interval_seconds: Int = omittable(ge=1, le=86_400)
    timeout_seconds: Int = omittable(ge=1, le=300)
    enabled: Bool = omittable()
    pinned: Bool = omittable(description="Show its charts on the Overview.")
    options: dict = omittable()
    group: str = omittable(min_length=1, max_length=40, pattern=GROUP_PATTERN, description=GROUP_DESCRIPTION)


class TargetOut(Schema):
    id: int
    name: str
    kind: str
    enabled: bool
    builtin: bool
    pinned: bool
    url: str = Field(..., description="The URL with its password masked.")
    interval_seconds: int
    timeout_seconds: int
    options: dict
    group: str
    next_due_at: datetime | None = Field(..., description="When its next collection is due (null: not scheduled).")
    status: str
    last_success_at: datetime | None
    last_attempt_at: datetime | None
    last_error: str
    last_error_at: datetime | None
    last_duration_ms: float | None
    consecutive_failures: int

    @staticmethod
    def resolve_url(obj: Target) -> str:
        # Explicit: the model's own `url` property decrypts, and must never be serialised.
        return obj.url_display


class ConnectionTestOut(Schema):
    ok: bool
    detail: str


class IngestModel(BaseModel):
    # Plain pydantic models, not ninja Schemas: ninja's Schema wraps every object in an
    # ORM-friendly root validator, which costs milliseconds on a 10,000-point body.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class IngestSeriesIn(IngestModel):
    metric: str = Field(..., min_length=1, max_length=200, pattern=METRIC_PATTERN)
    labels: dict[Text, Text] = Field(default_factory=dict)
    kind: SeriesKind = SeriesKind.GAUGE
    unit: Text = Field("", max_length=20)
    points: list[tuple[float, float]] = Field(..., min_length=1, description="[unix seconds, value] pairs")


class IngestIn(IngestModel):
    target: Text | None = Field(None, description="Name of an existing target the series belong to.")
    series: list[IngestSeriesIn] = Field(..., min_length=1)


class IngestOut(Schema):
    accepted: int
    series: int


class SeriesOut(Schema):
    id: int
    target: str | None
    metric: str
    labels: dict
    kind: str
    unit: str


class QuerySeriesOut(SeriesOut):
    points: list[tuple[datetime, float, float, float]] = Field(..., description="[time, avg, min, max]")


class QueryOut(Schema):
    resolution: str
    step_seconds: int
    series: list[QuerySeriesOut]


class CurrentValueOut(Schema):
    target: str | None
    target_status: str | None
    metric: str
    labels: dict
    value: float
    at: datetime


class ForecastOut(Schema):
    series_id: int
    metric: str
    labels: dict
    current: float
    limit: float
    slope_per_day: float
    days_to_limit: float | None
    reaches_at: datetime | None
    r_squared: float


class ForwardingOut(Schema):
    enabled: bool
    endpoint: str
    lag_samples: int
    lag_seconds: float
    sent_samples: int
    sent_requests: int
    failed_requests: int
    rejected_requests: int
    rejected_samples: int
    dropped_samples: int
    attempt: int
    next_attempt_at: datetime | None
    last_success_at: datetime | None
    last_error: str
    last_error_at: datetime | None


SOURCE_NAME = {"min_length": 1, "max_length": 100, "pattern": r"^[-a-zA-Z0-9_]+$"}
SOURCE_URL_DESCRIPTION = (
    "The base of a Prometheus-compatible query API (queries go to <url>/api/v1/query): http(s), no credentials, "
    "checked against the outbound policy (422 naming `url` if refused)."
)
SOURCE_BEARER_HELP = "Sent as `Authorization: Bearer`; stored encrypted and never shown back."


class PromQLSourceIn(StrictSchema):
    name: str = Field(..., **SOURCE_NAME)
    url: str = Field(..., min_length=1, max_length=500, description=SOURCE_URL_DESCRIPTION)
    token: str = Field("", max_length=4096, description=SOURCE_BEARER_HELP)
    timeout_seconds: Float = Field(10.0, ge=0.5, le=60)


class PromQLSourcePatchIn(StrictSchema):
    name: str = omittable(**SOURCE_NAME)
    url: str = omittable(min_length=1, max_length=500, description=SOURCE_URL_DESCRIPTION)
    token: str = omittable(max_length=4096, description=f'{SOURCE_BEARER_HELP} Leave out to keep it; "" removes it.')
    timeout_seconds: Float = omittable(ge=0.5, le=60)


class PromQLSourceOut(Schema):
    id: int
    name: str
    url: str
    token_set: bool = Field(..., description="Whether a token is stored; the token itself is never shown.")
    timeout_seconds: float
    created_at: datetime
    updated_at: datetime

    @staticmethod
    def resolve_token_set(obj) -> bool:
        return bool(obj.token_encrypted)
