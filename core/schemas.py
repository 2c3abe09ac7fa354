from __future__ import annotations

from datetime import datetime
from enum import Enum, StrEnum
from typing import Annotated, Any

from ninja import Field, Schema
from pydantic import BeforeValidator, ConfigDict, StrictBool, StringConstraints


def _json_number(value: Any) -> Any:
    # pydantic's lax mode takes "10" and true as numbers; JSON Schema does not. 10.0 stays an
    # integer, as JSON Schema counts it, and pydantic's own check refuses 10.5.
    if isinstance(value, bool | str | bytes):
        raise ValueError("Input should be a JSON number, not a string or a boolean")
    return value


# Input fields are typed as openapi.json says, and strictly: JSON `0`, `"0"` or `"false"` is not a
# boolean, `"10"`, `true` or `10.5` not an integer, `"1.5"` or `false` not a number.
Bool = StrictBool
Int = Annotated[int, BeforeValidator(_json_number)]
Float = Annotated[float, BeforeValidator(_json_number)]
# A row id: what PostgreSQL's bigint holds (a larger one was a DataError from the database).
Id = Annotated[int, Field(ge=1, le=2**63 - 1), BeforeValidator(_json_number)]

# No input text may hold NUL, which PostgreSQL's text and jsonb cannot store. core/parser.py
# enforces it for every body and query the API parses, config/api.py publishes this pattern on
# every input string; models that bypass the parser (push ingestion) type their strings `Text`.
NO_NUL = r"^[^\x00]*$"
Text = Annotated[str, StringConstraints(pattern=NO_NUL)]

__all__ = ["NO_NUL", "Bool", "Float", "Id", "Int", "StrictSchema", "Text", "choices_enum", "omittable"]


class StrictSchema(Schema):
    """Base of every input schema: an unknown field or a NaN/Infinity is refused, not silently dropped.

    Fields are declared with `Bool` and `Int` (strict), and a field that may be left out but not
    set to null is declared `name: Bool = None`: null is then refused (422 naming the field),
    while `payload.dict(exclude_unset=True)` leaves out what was not sent.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def _no_default(schema: dict) -> None:
    schema.pop("default", None)


def omittable(**kwargs):
    """A field a PATCH may leave out but not set to null: `name: str = omittable(max_length=100)`.

    Its default (None, for "not sent") is not validated and not published, so openapi.json shows
    the plain type and a null is refused as not being one.
    """
    return Field(None, json_schema_extra=_no_default, **kwargs)


def choices_enum(name: str, choices: type[Enum]) -> type[StrEnum]:
    """Django choices as an enum named `name`, its component name in openapi.json.

    The schema generator names an enum after its class, and several models have a `Kind`: the
    document then held one `Kind` for all of them. Members are strings, so services and the ORM
    take them as the values they are.
    """
    return StrEnum(name, {member.name: member.value for member in choices})


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


class ApiTokenIn(StrictSchema):
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
    queue_length: int | None = Field(..., description="Messages waiting; null when the broker cannot be read.")
    schedules: list[ScheduleOut]


class SchedulePatchIn(StrictSchema):
    enabled: Bool


class ScheduleRunOut(Schema):
    task_id: str
