"""Optimizer API schemas: explicit fields, `<Thing>In` / `<Thing>Out`."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from ninja import Field, Schema
from pydantic import AwareDatetime, BeforeValidator

from core.schemas import Bool, Id, Int, StrictSchema
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
    sequence_advice: list[RecommendationOut] = Field(..., description="Sequences and integer keys near their end.")
    n_plus_one_advice: list[RecommendationOut] = Field(
        ..., description="N+1 queries: a lookup by key run once per row of another query (advice only)."
    )
    bloat_advice: list[RecommendationOut] = Field(..., description="Bloated tables and indexes (space tuner).")
    vacuum_status: list[dict[str, Any]]
    last_runs: list[RunOut]


class CacheKeyOut(Schema):
    key: str
    namespace: str
    bytes: int = Field(..., description="MEMORY USAGE of the key.")
    freq: int | None = Field(None, description="OBJECT FREQ (LFU policies only).")
    idle_seconds: int | None = Field(None, description="OBJECT IDLETIME (non-LFU policies only).")


class CacheKeyNamespaceOut(Schema):
    namespace: str
    keys: int = Field(..., description="Keys of the namespace in the sample.")
    cold_keys: int
    cold_bytes: int
    max_freq: int | None = Field(None, description="Highest OBJECT FREQ in the namespace (LFU policies only).")


class CacheKeyAccessOut(Schema):
    policy: str = Field(..., description="The maxmemory-policy the sample was taken under.")
    lfu: bool = Field(..., description="Whether Redis counts accesses (an LFU policy); if not, no hot keys.")
    sampled_keys: int
    complete: bool = Field(..., description="False when the sample stopped at its time limit.")
    cold_idle_seconds: int | None = Field(None, description="Idle time from which a key is cold (non-LFU only).")
    note: str = Field(..., description="Why hot keys are missing (non-LFU policies); empty under LFU.")
    hot_keys: list[CacheKeyOut]
    cold_keys: list[CacheKeyOut] = Field(..., description="Largest cold keys: OBJECT FREQ 0, or idle that long.")
    namespaces: list[CacheKeyNamespaceOut]


class CacheCodecOut(Schema):
    bytes: int = Field(..., description="The sampled values once compressed.")
    saved: int = Field(..., description="Sampled bytes minus compressed bytes.")
    ratio: float = Field(..., description="Sampled bytes / compressed bytes.")
    estimated_saved: int = Field(
        ..., description="The saving extrapolated to the namespace's large strings (MEMORY USAGE) and its keys."
    )


class CacheCompressionNamespaceOut(Schema):
    namespace: str
    keys: int = Field(..., description="Keys of the namespace in the whole scan.")
    large_keys: int = Field(..., description="String keys of at least min_bytes in the sample.")
    sampled_keys: int
    sampled_bytes: int
    codecs: dict[Literal["zstd", "lz4"], CacheCodecOut] = Field(..., description="What each codec makes of the sample.")


class CacheCompressionOut(Schema):
    min_bytes: int
    value_cap: int = Field(..., description="Bytes read per value at most.")
    total_cap: int = Field(..., description="Bytes read in all at most.")
    sampled_keys: int
    sampled_bytes: int
    complete: bool = Field(..., description="False when the sample stopped at its time limit.")
    no_touch: bool = Field(..., description="Read with CLIENT NO-TOUCH (Redis 7.2+): no access was counted.")
    notes: list[str]
    namespaces: list[CacheCompressionNamespaceOut]


class RelationSpaceOut(Schema):
    schema_name: str = Field(..., description="The relation's schema.")
    name: str
    kind: Literal["table", "index"]
    parent: str = Field(..., description="An index's table; empty for a table.")
    bytes: int = Field(..., description="A table with its indexes and TOAST; an index alone.")
    relation_bytes: int = Field(..., description="The table's heap or the index itself: what bloat is measured of.")
    rows: int = Field(..., description="reltuples (the planner's count).")
    bloat_bytes: int | None = Field(..., description="None when it could not be estimated.")
    bloat_percent: float | None
    bloat_source: Literal["estimate", "pgstattuple", ""]
    growth_per_day: float | None = Field(..., description="Bytes per day (least squares); None with one reading.")
    bytes_in_30_days: float | None = Field(..., description="Forecast if the growth goes on.")


class SpaceTotalOut(Schema):
    day: date
    bytes: int


class SpaceOut(Schema):
    target_id: int
    target: str
    day: date | None = Field(..., description="Of the newest reading (the space tuner runs daily); None before one.")
    total_bytes: int = Field(..., description="All tables read, with their indexes and TOAST.")
    total_growth_per_day: float | None
    total_in_30_days: float | None
    until_bytes: int | None
    days_until: float | None = Field(..., description="Days until the total reaches until_bytes; None if not growing.")
    totals: list[SpaceTotalOut] = Field(..., description="The total per day, oldest first.")
    relations: list[RelationSpaceOut] = Field(..., description="The largest tables and indexes, largest first.")


class CacheReportOut(Schema):
    target_id: int
    target: str
    analysis: dict[str, Any]
    key_access: CacheKeyAccessOut | None = Field(..., description="Hot and cold keys of the latest analysis.")
    compression: CacheCompressionOut | None = Field(..., description="Compressible values of the latest analysis.")
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


# --- live activity --------------------------------------------------------------------------


class BackendOut(Schema):
    pid: int
    username: str | None
    application_name: str
    client: str = Field(..., description="Client host name or address, or 'local' for a Unix socket.")
    state: str | None
    backend_start: datetime
    xact_start: datetime | None
    query_start: datetime | None
    query_seconds: float | None = Field(..., description="Since the current (or last) query started.")
    xact_seconds: float | None = Field(..., description="Since the open transaction started.")
    state_seconds: float | None = Field(..., description="In the current state (idle in transaction for so long).")
    wait_event_type: str | None
    wait_event: str | None
    query: str = Field(..., description="The query text, cut at 2,000 characters.")
    blocked_by: list[int] = Field(..., description="Pids holding the lock this backend waits on.")


class BlockingOut(Schema):
    pid: int
    depth: int = Field(
        ..., description="0 for a blocker waiting on nobody; each waiter follows its blocker, one deeper."
    )


class LockOut(Schema):
    pid: int
    locktype: str
    mode: str
    granted: bool
    object: str | None


class ActivityOut(Schema):
    target_id: int
    target: str
    error: str = Field(..., description="Why there is no live activity (viewer, disabled or unreachable target).")
    read_at: datetime | None
    allow_terminate: bool
    running: list[BackendOut]
    idle_in_transaction: list[BackendOut]
    blocking: list[BlockingOut]
    locks: list[LockOut]


class BackendSignalIn(StrictSchema):
    target: Id | TargetName
    pid: Int = Field(..., ge=1, le=2**31 - 1)
    backend_start: AwareDatetime = Field(..., description="As the activity list showed it: a reused pid is refused.")
    query_start: AwareDatetime | None = Field(
        None,
        description="As the activity list showed it (null if none): a backend now running another query is refused.",
    )


class BackendSignalOut(Schema):
    action: Literal["cancel", "terminate"]
    pid: int
    signalled: bool = Field(..., description="cancel: the signal was sent; terminate: the backend is gone.")
    username: str
    query: str
    message: str


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


# --- query history and speed-ups -----------------------------------------------------------------


class QueryTotalsOut(Schema):
    calls: int
    total_time_ms: float
    mean_time_ms: float | None = Field(..., description="null when there was no call.")
    rows: int
    shared_blks_hit: int
    shared_blks_read: int
    hit_ratio_percent: float | None = Field(..., description="null when no shared block was touched.")


class QueryBucketOut(QueryTotalsOut):
    at: datetime = Field(..., description="The bucket's start (buckets are aligned to the Unix epoch).")


class AppliedMarkerOut(Schema):
    run_id: int
    recommendation_id: int | None
    title: str
    category: str
    applied_at: datetime
    serves_query: bool = Field(..., description="Advised for this query, or on a table it reads.")


class QueryHistoryOut(Schema):
    target_id: int
    target: str
    queryid: int
    query: str = Field(..., description="The normalized text; empty when monitoring kept none.")
    database: str
    range: Literal["1h", "24h", "7d", "30d"]
    start: datetime
    end: datetime
    bucket_seconds: int
    buckets: list[QueryBucketOut] = Field(..., description="Oldest first; a bucket with no snapshot is left out.")
    totals: QueryTotalsOut
    markers: list[AppliedMarkerOut] = Field(..., description="Recommendations applied on the target in the range.")


class SpeedupQueryOut(Schema):
    queryid: int
    query: str
    before_ms: float | None
    after_ms: float | None
    speedup: float | None


class SpeedupOut(Schema):
    run_id: int
    recommendation_id: int | None
    title: str
    category: str
    applied_at: datetime | None
    status: Literal["observed", "waiting", "not_observed"]
    speedup: float | None = Field(..., description="Mean time before / after over the queries observed.")
    mean_before_ms: float | None
    mean_after_ms: float | None
    note: str
    queries: list[SpeedupQueryOut]


class SpeedupsOut(Schema):
    target_id: int
    target: str
    speedups: list[SpeedupOut]


class PlanCaptureOut(Schema):
    id: int
    captured_at: datetime
    fingerprint: str = Field(..., description="sha256 of the plan's shape (nodes, join order, relations, indexes).")
    mean_time_ms: float = Field(..., description="Mean time since the capture before it (overall, for the first).")
    settings: dict[str, str] = Field(
        ..., description="The role's settings (pg_db_role_setting) the plan was taken with."
    )


class PlanCaptureDetailOut(PlanCaptureOut):
    plan: list[dict[str, Any]] = Field(..., description="EXPLAIN (FORMAT JSON) of the generic plan.")
    nodes: list[PlanNodeOut]

    @staticmethod
    def resolve_nodes(capture) -> list:
        return plan_tree(capture.plan).nodes


class PlanRegressionOut(Schema):
    id: int
    target_id: int
    target: str = Field(..., alias="target.name")
    queryid: int
    role: str = Field(..., description="The role that runs the query; its plan was taken as that role.")
    query: str
    detected_at: datetime
    mean_before_ms: float
    mean_after_ms: float = Field(..., description="Mean time since the last capture of the old plan.")
    slowdown: float | None = Field(..., description="mean_after_ms / mean_before_ms.")
    before: PlanCaptureOut = Field(..., description="The last capture of the old plan.")
    after: PlanCaptureOut = Field(..., description="The first capture of the new plan.")


class PlanRegressionDetailOut(PlanRegressionOut):
    before: PlanCaptureDetailOut
    after: PlanCaptureDetailOut
