"""Optimizer API schemas: explicit fields, `<Thing>In` / `<Thing>Out`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from ninja import Field, Schema
from pydantic import BeforeValidator

from core.schemas import Bool, Id, StrictSchema
from core.schemas import _json_number as json_number
from optimizer.plans import plan_tree

TargetName = Annotated[str, Field(min_length=1, max_length=100)]

# The statuses as the API publishes them (tests check they match the models' choices).
RunStatus = Literal["pending", "running", "succeeded", "failed", "skipped", "deferred", "interrupted"]
RecommendationStatus = Literal["open", "applying", "applied", "dismissed", "obsolete"]


class RecommendationOut(Schema):
    id: int
    target_id: int
    target: str = Field(..., alias="target.name")
    tuner: str
    category: str
    title: str
    explanation: str
    statement: str
    estimated_impact: str
    effort: str
    priority: int
    status: RecommendationStatus
    verified: bool
    evidence: dict[str, Any]
    first_seen_at: datetime
    last_seen_at: datetime
    status_changed_at: datetime | None
    status_changed_by: str
    apply_error: str = Field(..., description="Why the last apply did not finish; empty otherwise.")


class RunOut(Schema):
    id: int
    tuner: str
    action: str
    target_id: int | None
    target: str = Field(..., alias="target_name")
    recommendation_id: int | None
    trigger: str
    started_by: str = Field(..., alias="started_by_name")
    params: dict[str, Any]
    dry_run: bool
    status: RunStatus = Field(..., description="pending and running are live; every other status is terminal.")
    summary: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    duration_ms: float | None
    evidence_before: dict[str, Any]
    evidence_after: dict[str, Any]
    statements: list[dict[str, Any]]
    error: str


class OptimizationExecuteIn(StrictSchema):
    tuners: list[str] = Field(..., min_length=1, description="Tuner kinds, e.g. vacuum, indexes.")
    targets: list[Id | TargetName] = Field(..., min_length=1, description="Target ids or names.")
    dry_run: Bool = False
    params: dict[str, Any] = Field(default_factory=dict, description="Tuner parameters and run options.")


class OptimizeIn(StrictSchema):
    targets: list[Id | TargetName] = Field(..., min_length=1)
    dry_run: Bool = False
    tuners: list[str] | None = Field(None, description="Defaults to every tuner of the kind.")
    params: dict[str, Any] = Field(default_factory=dict)


class TunerOut(Schema):
    kind: str
    label: str
    description: str
    target_kinds: list[str]
    schedules: list[str]
    last_run_id: int | None
    last_run_status: str | None
    last_run_at: datetime | None


class ReportOut(Schema):
    runs: list[RunOut]
    count: int
    by_status: dict[str, int]
    tuners: list[TunerOut]


class SlowQueryOut(Schema):
    queryid: int
    query: str
    calls: int
    total_time_ms: float
    mean_time_ms: float


class DatabaseReportOut(Schema):
    target_id: int
    target: str
    error: str
    slow_queries: list[SlowQueryOut]
    index_advice: list[RecommendationOut]
    unused_indexes: list[RecommendationOut]
    vacuum_advice: list[RecommendationOut]
    config_advice: list[RecommendationOut]
    vector_advice: list[RecommendationOut]
    vacuum_status: list[dict[str, Any]]
    last_runs: list[RunOut]


class CacheReportOut(Schema):
    target_id: int
    target: str
    analysis: dict[str, Any]
    recommendations: list[RecommendationOut]
    last_runs: list[RunOut]


class BenchmarkIn(StrictSchema):
    target: int | str = Field(..., description="The PostgreSQL or Redis target, by id or name.")
    operations: int = Field(200, ge=1, le=2000, description="Writes, then as many reads.")


class BenchmarkOut(Schema):
    run_id: int
    target: str
    operations: int
    read_p50_ms: float
    read_p95_ms: float
    write_p50_ms: float
    write_p95_ms: float


# --- EXPLAIN ---------------------------------------------------------------------------------

ExplainRunStatus = Literal["pending", "running", "done", "failed", "cancelled", "interrupted"]
QueryText = Annotated[str, Field(min_length=1, max_length=100_000)]
# Bounds inside the Annotated (before the strict-number check), so openapi.json publishes them on an optional field.
QueryId = Annotated[int, Field(ge=-(2**63), le=2**63 - 1), BeforeValidator(json_number)]  # a signed bigint
Timeout = Annotated[float, Field(ge=1, le=3600), BeforeValidator(json_number)]


class ExplainIn(StrictSchema):
    target: Id | TargetName = Field(..., description="The PostgreSQL target, by id or name.")
    query: QueryText | None = Field(None, description="One statement; normalized text may hold $1, $2 ….")
    queryid: QueryId | None = Field(None, description="Or a pg_stat_statements query id monitoring recorded.")
    mode: Literal["auto", "plain", "generic"] = Field(
        "auto", description="auto: the generic plan when the text has $n parameters, else plain EXPLAIN."
    )


class ExplainAnalyzeIn(StrictSchema):
    target: Id | TargetName = Field(..., description="The PostgreSQL target, by id or name.")
    query: QueryText | None = Field(None, description="One statement with constants (it runs, then is rolled back).")
    queryid: QueryId | None = Field(None, description="Or a recorded query id (its text must have no $n).")
    statement_timeout_seconds: Timeout | None = Field(
        None, description="At least 1, at most PERFPILOT_EXPLAIN_ANALYZE_TIMEOUT (the default)."
    )


class PlanNodeOut(Schema):
    index: int
    depth: int
    node_type: str
    detail: str
    estimated_rows: float
    actual_rows: float | None
    misestimate_factor: float | None = Field(..., description="How many times off the row estimate was, either way.")
    loops: int | None
    total_cost: float
    exclusive_cost: float
    exclusive_time_ms: float | None = Field(..., description="Time in this node itself, all loops, children excluded.")
    shared_hit: int | None
    shared_read: int | None
    worst: bool
    notes: list[str]


class ExplainOut(Schema):
    target_id: int
    target: str
    mode: Literal["plain", "generic"]
    method: str = Field(..., description="How the plan was obtained (GENERIC_PLAN, or PREPARE on PostgreSQL < 16).")
    query: str
    server_version: int
    nodes: list[PlanNodeOut]
    worst_node: int | None
    planning_time_ms: float | None
    plan: list[dict[str, Any]] = Field(..., description="EXPLAIN (FORMAT JSON) as the target returned it.")


class ExplainRunOut(Schema):
    id: int
    target_id: int
    target: str = Field(..., alias="target.name")
    query: str
    queryid: int | None
    status: ExplainRunStatus = Field(..., description="pending and running are live; every other status is terminal.")
    statement_timeout_seconds: float
    started_by: str = Field(..., alias="started_by_name")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    backend_pid: int | None
    cancel_requested_at: datetime | None
    error: str
    plan: list[dict[str, Any]] | None
    nodes: list[PlanNodeOut] = Field(..., description="The plan tree, once done (empty before).")
    worst_node: int | None
    execution_time_ms: float | None

    @staticmethod
    def resolve_nodes(run) -> list:
        return plan_tree(run.plan).nodes if run.plan else []

    @staticmethod
    def resolve_worst_node(run) -> int | None:
        worst = plan_tree(run.plan).worst if run.plan else None
        return worst.index if worst else None

    @staticmethod
    def resolve_execution_time_ms(run) -> float | None:
        return plan_tree(run.plan).execution_time_ms if run.plan else None
