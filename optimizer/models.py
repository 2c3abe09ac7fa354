"""Optimizer data: the optimization log (one row per tuner run or applied fix) and recommendations."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from monitoring.models import Target


class Recommendation(models.Model):
    """One piece of advice for a target, deduplicated across runs by its fingerprint."""

    class Category(models.TextChoices):
        MISSING_INDEX = "missing_index", "Missing index"
        UNUSED_INDEX = "unused_index", "Unused index"
        DUPLICATE_INDEX = "duplicate_index", "Duplicate index"
        INVALID_INDEX = "invalid_index", "Invalid index"
        FK_INDEX = "fk_index", "Foreign key without index"
        VACUUM = "vacuum", "Vacuum"
        AUTOVACUUM = "autovacuum", "Autovacuum settings"
        CONFIG = "config", "Configuration"
        VECTOR_INDEX = "vector_index", "Vector index"
        SEQUENCE = "sequence", "Sequence near its end"
        N_PLUS_ONE = "n_plus_one", "N+1 queries"
        BLOAT = "bloat", "Bloat"
        CACHE = "cache", "Cache"

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        APPLYING = "applying", "Being applied"
        APPLIED = "applied", "Applied"
        DISMISSED = "dismissed", "Dismissed"
        OBSOLETE = "obsolete", "Obsolete"

    class Effort(models.TextChoices):
        LOW = "low", "Low"
        MEDIUM = "medium", "Medium"
        HIGH = "high", "High"

    target = models.ForeignKey(Target, on_delete=models.CASCADE, related_name="recommendations")
    tuner = models.CharField(max_length=50)
    fingerprint = models.CharField(max_length=64)
    category = models.CharField(max_length=30, choices=Category.choices)
    title = models.CharField(max_length=300)
    explanation = models.TextField(blank=True)
    statement = models.TextField(blank=True, help_text="The exact statement(s) Apply runs, one per line.")
    estimated_impact = models.CharField(max_length=200, blank=True)
    effort = models.CharField(max_length=10, choices=Effort.choices, default=Effort.LOW)
    priority = models.PositiveIntegerField(default=50, help_text="0-100, higher first.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    verified = models.BooleanField(default=False, help_text="Checked for real (HypoPG, measurement), not estimated.")
    evidence = models.JSONField(default=dict, blank=True)
    first_seen_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(auto_now=True)
    status_changed_at = models.DateTimeField(null=True, blank=True)
    status_changed_by = models.CharField(max_length=150, blank=True)
    apply_error = models.TextField(blank=True, help_text="Why the last apply did not finish (it is open again).")

    class Meta:
        ordering = ["-priority", "-last_seen_at"]
        constraints = [models.UniqueConstraint(fields=["target", "fingerprint"], name="recommendation_identity")]
        indexes = [models.Index(fields=["status", "-priority"])]

    def __str__(self) -> str:
        return self.title

    @property
    def statements(self) -> list[str]:
        return [line for line in self.statement.splitlines() if line.strip()]

    @property
    def served_queries(self) -> list[dict]:
        """The queries an index advice serves: text, mean time when advised and, once applied, as observed after.

        The "after" times are what the speed-up measurement wrote into the applying run (one read, applied only).
        """
        observed: dict = {}
        if self.status == self.Status.APPLIED:
            run = self.optimizationrun_set.filter(action="apply", status="succeeded").order_by("-id").first()
            observed = ((run.evidence_after or {}).get("observed") or {}).get("queries", {}) if run else {}
        return [
            {
                "query": " ".join(str(q.get("query", "")).split()),
                "before_ms": q.get("mean_time_ms"),
                "after_ms": (observed.get(str(q.get("queryid"))) or {}).get("after_ms"),
                "cost_before": q.get("cost_before"),
                "cost_after": q.get("cost_after"),
                "constant": q.get("constant"),
            }
            for q in self.evidence.get("queries", [])
        ]


LIVE_RUN_STATUSES = ("pending", "running")  # every other status of a run is terminal


class OptimizationRun(models.Model):
    """One tuner run, or one applied recommendation: the optimization log."""

    class Trigger(models.TextChoices):
        SCHEDULE = "schedule", "Schedule"
        OPERATOR = "operator", "Operator"
        API = "api", "API"
        POLICY = "policy", "Auto policy"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        SKIPPED = "skipped", "Skipped"
        DEFERRED = "deferred", "Deferred"
        INTERRUPTED = "interrupted", "Interrupted"

    class Action(models.TextChoices):
        RUN = "run", "Tuner run"
        APPLY = "apply", "Apply recommendation"
        BENCHMARK = "benchmark", "Benchmark"

    LIVE_STATUSES = LIVE_RUN_STATUSES

    tuner = models.CharField(max_length=50)
    action = models.CharField(max_length=10, choices=Action.choices, default=Action.RUN)
    target = models.ForeignKey(Target, on_delete=models.SET_NULL, null=True, related_name="optimization_runs")
    target_name = models.CharField(max_length=100, blank=True)
    recommendation = models.ForeignKey(Recommendation, on_delete=models.SET_NULL, null=True, blank=True)
    trigger = models.CharField(max_length=10, choices=Trigger.choices)
    started_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    started_by_name = models.CharField(max_length=150, blank=True)
    params = models.JSONField(default=dict, blank=True)
    dry_run = models.BooleanField(default=False)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING)
    summary = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.FloatField(null=True, blank=True)
    backend_pid = models.IntegerField(null=True, blank=True, help_text="Target backend running the action.")
    owner = models.JSONField(
        default=dict, blank=True, help_text="The worker process running it: host, pid, its start time, Celery task."
    )
    heartbeat_at = models.DateTimeField(
        null=True, blank=True, help_text="Last sign of life from the worker running it (or, pending, from its task)."
    )
    evidence_before = models.JSONField(default=dict, blank=True)
    evidence_after = models.JSONField(default=dict, blank=True)
    statements = models.JSONField(default=list, blank=True, help_text="Statements executed (or, dry-run, planned).")
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["target", "tuner", "-created_at"]),
            models.Index(fields=["-created_at"]),
            # monitoring/collectors/perfpilot.py counts the runs that ended since its last collection.
            models.Index(fields=["finished_at"], name="optimizer_run_finished"),
            # The reaper reads the few live runs every 30 s, never the whole log.
            models.Index(
                fields=["status"], name="optimizer_run_live", condition=models.Q(status__in=LIVE_RUN_STATUSES)
            ),
        ]

    def __str__(self) -> str:
        return f"{self.tuner} on {self.target_name} ({self.status})"

    @property
    def is_live(self) -> bool:
        return self.status in self.LIVE_STATUSES


LIVE_EXPLAIN_STATUSES = ("pending", "running")


class ExplainRun(models.Model):
    """One EXPLAIN ANALYZE of a query on a target, run by a worker inside a transaction always rolled back.

    At most one is live per (target, fingerprint): the partial unique constraint makes a second start
    while one runs fail atomically in the database, and the caller is given the running one instead.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"
        INTERRUPTED = "interrupted", "Interrupted"

    LIVE_STATUSES = LIVE_EXPLAIN_STATUSES

    target = models.ForeignKey(Target, on_delete=models.CASCADE, related_name="explain_runs")
    fingerprint = models.CharField(max_length=64, help_text="sha256 of the query text, whitespace collapsed.")
    query = models.TextField()
    queryid = models.BigIntegerField(null=True, blank=True, help_text="pg_stat_statements id it came from, if any.")
    statement = models.TextField(blank=True, help_text="What runs on the target (EXPLAIN ... the query).")
    statement_timeout_seconds = models.FloatField()
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING)
    started_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    started_by_name = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    backend_pid = models.IntegerField(null=True, blank=True, help_text="Target backend running the EXPLAIN.")
    owner = models.JSONField(default=dict, blank=True, help_text="The worker process running it.")
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    cancel_requested_by = models.CharField(max_length=150, blank=True)
    plan = models.JSONField(null=True, blank=True, help_text="EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) output.")
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["target", "fingerprint"],
                condition=models.Q(status__in=LIVE_EXPLAIN_STATUSES),
                name="explain_run_single_flight",
            )
        ]
        indexes = [
            models.Index(
                fields=["status"], name="explain_run_live", condition=models.Q(status__in=LIVE_EXPLAIN_STATUSES)
            )
        ]

    def __str__(self) -> str:
        return f"EXPLAIN ANALYZE on {self.target_id} ({self.status})"

    @property
    def is_live(self) -> bool:
        return self.status in self.LIVE_STATUSES


class PlanCapture(models.Model):
    """The generic plan of one of a target's top queries, as the role that runs it gets it, at one moment.

    `fingerprint` hashes the plan's shape only (node types, join order, relations, indexes), so a
    change of costs or estimates is not a change of plan. pg_stat_statements' cumulative counters of
    the (query, role) at capture time let the mean time between two captures be computed exactly.
    """

    target = models.ForeignKey(Target, on_delete=models.CASCADE, related_name="plan_captures")
    queryid = models.BigIntegerField()
    role = models.CharField(max_length=200, help_text="The role that runs the query (pg_stat_statements userid).")
    query = models.TextField()
    fingerprint = models.CharField(max_length=64, help_text="sha256 of the plan's shape, costs aside.")
    plan = models.JSONField(help_text="EXPLAIN (FORMAT JSON) of the generic plan.")
    settings = models.JSONField(default=dict, blank=True, help_text="The role's settings applied (pg_db_role_setting).")
    captured_at = models.DateTimeField()
    calls_total = models.BigIntegerField(help_text="pg_stat_statements calls at capture time.")
    total_time_ms_total = models.FloatField(help_text="pg_stat_statements total_exec_time at capture time.")
    mean_time_ms = models.FloatField(help_text="Mean time since the previous capture (or overall, for the first).")

    class Meta:
        ordering = ["-captured_at", "-id"]
        indexes = [models.Index(fields=["target", "queryid", "role", "-captured_at"], name="plan_capture_history")]

    def __str__(self) -> str:
        return f"plan of {self.queryid} ({self.role}) at {self.captured_at}"


class PlanRegression(models.Model):
    """A query whose plan changed and got slower: the captures before and after the change, both means."""

    target = models.ForeignKey(Target, on_delete=models.CASCADE, related_name="plan_regressions")
    queryid = models.BigIntegerField()
    role = models.CharField(max_length=200)
    query = models.TextField()
    before = models.ForeignKey(PlanCapture, on_delete=models.CASCADE, related_name="+")
    after = models.OneToOneField(PlanCapture, on_delete=models.CASCADE, related_name="regression")
    detected_by = models.ForeignKey(PlanCapture, on_delete=models.CASCADE, related_name="+")
    mean_before_ms = models.FloatField()
    mean_after_ms = models.FloatField()
    detected_at = models.DateTimeField()

    class Meta:
        ordering = ["-detected_at", "-id"]
        indexes = [models.Index(fields=["target", "-detected_at"], name="plan_regression_recent")]

    def __str__(self) -> str:
        return f"plan regression of {self.queryid} ({self.role}) on {self.target_id}"

    @property
    def slowdown(self) -> float | None:
        return self.mean_after_ms / self.mean_before_ms if self.mean_before_ms else None


class RelationSize(models.Model):
    """The size of one table or index of a target on one day (the space tuner's daily reading).

    A second reading the same day replaces the first (one row per target, day and relation), so the
    history is one point a day whatever the schedule; rows older than PERFPILOT_SPACE_RETENTION_DAYS go.
    """

    class Kind(models.TextChoices):
        TABLE = "table", "Table"
        INDEX = "index", "Index"

    class BloatSource(models.TextChoices):
        ESTIMATE = "estimate", "Estimate from pg_stats"
        PGSTATTUPLE = "pgstattuple", "Measured by pgstattuple"

    target = models.ForeignKey(Target, on_delete=models.CASCADE, related_name="relation_sizes")
    day = models.DateField()
    schema = models.CharField(max_length=63)
    name = models.CharField(max_length=63)
    kind = models.CharField(max_length=5, choices=Kind.choices)
    parent = models.CharField(max_length=63, blank=True, help_text="An index's table (same schema).")
    bytes = models.BigIntegerField(help_text="A table with its indexes and TOAST; an index alone.")
    relation_bytes = models.BigIntegerField(help_text="The table's or index's own main fork (what bloat is of).")
    rows = models.BigIntegerField(help_text="reltuples: the planner's row (or index entry) count.")
    bloat_bytes = models.BigIntegerField(null=True, blank=True, help_text="None when it could not be estimated.")
    bloat_source = models.CharField(max_length=11, choices=BloatSource.choices, blank=True)

    class Meta:
        ordering = ["target", "-day", "-bytes"]
        constraints = [
            models.UniqueConstraint(fields=["target", "day", "schema", "name"], name="relation_size_identity")
        ]
        indexes = [models.Index(fields=["target", "-day"])]

    def __str__(self) -> str:
        return f"{self.schema}.{self.name} on {self.day}: {self.bytes} bytes"
