from __future__ import annotations

from datetime import datetime

from ninja import Field, Schema
from pydantic import ConfigDict


class StrictSchema(Schema):
    """Base of every input schema: an unknown field or a NaN/Infinity is refused, not silently dropped."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class ErrorOut(Schema):
    detail: str | list[dict] = Field(
        ..., description="What is wrong: a sentence, or (validation) a list of {loc, msg, type} naming each field."
    )
    field: str | None = Field(None, description="The input field at fault, when there is one.")


class CheckOut(Schema):
    ok: bool
    detail: str
    latency_ms: float


class StatusOut(Schema):
    version: str
    uptime_seconds: float
    healthy: bool
    failed: list[str]
    components: dict[str, CheckOut]


class MeOut(Schema):
    username: str
    role: str | None


class ApiTokenIn(Schema):
    name: str = Field(..., min_length=1, max_length=100)


class ApiTokenOut(Schema):
    id: int
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiTokenCreatedOut(ApiTokenOut):
    token: str = Field(..., description="The secret. It is shown this once and cannot be read again.")


class ScheduleOut(Schema):
    id: int
    name: str
    task: str
    enabled: bool
    schedule: str
    last_run_at: datetime | None
    total_run_count: int


class SectionSummaryOut(Schema):
    section: str
    queue: str
    queue_length: int | None = Field(..., description="Messages waiting; null when Redis cannot be read.")
    schedules: list[ScheduleOut]


class SchedulePatchIn(Schema):
    enabled: bool


class ScheduleRunOut(Schema):
    task_id: str
