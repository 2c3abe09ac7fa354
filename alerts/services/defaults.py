"""The default rule set, each rule installed once (core.bootstrap, at every start); afterwards the
rules are the user's to edit, disable or delete. A rule added to the set in a later version is
installed on the next start of an existing installation; a deleted one never comes back. Metric
names are the ones the collectors store (monitoring/collectors/*.py); event rules watch target
health and the failures other apps report."""

from __future__ import annotations

from django.db import transaction

from alerts.models import AlertRule
from alerts.services.manage import RuleInput, rule_create
from core.models import AuditEvent
from core.services import audit_record

INSTALLED_ACTION = "alerts.defaults.install"
MIB = 1024**2
GIB = 1024**3
ABOVE, BELOW = AlertRule.Kind.THRESHOLD_ABOVE, AlertRule.Kind.THRESHOLD_BELOW

DEFAULT_RULES: dict[str, RuleInput] = {
    "cpu": RuleInput(
        name="CPU busy", kind=ABOVE, metric="host_cpu_percent", series_labels={"cpu": "total"}, warning_threshold=85,
        critical_threshold=95,
        for_seconds=300, keep_firing_for_seconds=120, summary="Host CPU busy",
        runbook="Find the busy processes (top); check for runaway queries or a missing index.",
    ),
    "memory": RuleInput(
        name="Memory nearly full", kind=ABOVE, metric="host_memory_used_percent", warning_threshold=90,
        critical_threshold=95, for_seconds=300, keep_firing_for_seconds=120, summary="Host memory nearly full",
        runbook="Look for processes growing without bound; check work_mem and connection counts.",
    ),
    "disk": RuleInput(
        name="Disk nearly full", kind=ABOVE, metric="host_disk_used_percent", warning_threshold=85,
        critical_threshold=95, for_seconds=120, summary="Disk nearly full",
        runbook="Free space (old logs, WAL archives) or grow the volume before it fills.",
    ),
    "disk_forecast": RuleInput(
        name="Disk full soon", kind=AlertRule.Kind.FORECAST, metric="host_disk_used_percent", forecast_limit=100,
        warning_threshold=7, critical_threshold=2, eval_interval_seconds=900, summary="Disk fills up within days",
        runbook="On the current trend the disk fills up; plan space before it does.",
    ),
    "pg_connections": RuleInput(
        name="PostgreSQL connections", kind=ABOVE, metric="postgres_connections_used_percent", warning_threshold=80,
        critical_threshold=95, for_seconds=120, summary="PostgreSQL connections close to max_connections",
        runbook="Use a pooler (PgBouncer); look for idle-in-transaction sessions.",
    ),
    "pg_cache_hit": RuleInput(
        name="PostgreSQL cache hit ratio", kind=BELOW, metric="postgres_cache_hit_ratio_percent",
        warning_threshold=95, critical_threshold=90, for_seconds=600, summary="PostgreSQL cache hit ratio low",
        runbook="The working set no longer fits shared_buffers; check new sequential scans.",
    ),
    "pg_replication_lag": RuleInput(
        name="PostgreSQL replication lag", kind=ABOVE, metric="postgres_replication_lag_seconds",
        warning_threshold=30, critical_threshold=300, for_seconds=120, summary="Replica lagging behind",
        runbook="Check the replica's I/O and network, and long queries on it delaying replay.",
    ),
    "pg_long_transactions": RuleInput(
        name="PostgreSQL long transaction", kind=ABOVE, metric="postgres_oldest_transaction_age_seconds",
        warning_threshold=600, critical_threshold=3600, for_seconds=60, summary="Transaction open for long",
        runbook="Long transactions hold back vacuum; find them in pg_stat_activity and end them.",
    ),
    "pg_xid_wraparound": RuleInput(
        name="PostgreSQL XID wraparound", kind=ABOVE, metric="postgres_xid_wraparound_percent",
        warning_threshold=50, critical_threshold=75, summary="Transaction IDs approaching wraparound",
        runbook="Run VACUUM (FREEZE) on the oldest tables; check that autovacuum keeps up.",
    ),
    "pg_sequence_end": RuleInput(
        name="PostgreSQL sequence near its end", kind=ABOVE, metric="postgres_sequence_used_percent",
        warning_threshold=75, critical_threshold=90, summary="A sequence (or the integer key it feeds) is running out",
        runbook="Move the sequence and its key columns to bigint: see the Database page's sequence advice.",
    ),
    "redis_memory": RuleInput(
        name="Redis memory", kind=ABOVE, metric="redis_used_memory_bytes", warning_threshold=2 * GIB,
        critical_threshold=4 * GIB, for_seconds=300, summary="Redis uses much memory",
        runbook="Set these thresholds to your maxmemory; look for keys without TTL.",
    ),
    # Bytes, not the ratio: a small Redis (a fresh install's) shows a ratio of 4 over a few MB, which
    # MEMORY DOCTOR ignores too (it wants over 10 MB lost as well).
    "redis_fragmentation": RuleInput(
        name="Redis fragmentation", kind=ABOVE, metric="redis_allocator_frag_bytes", warning_threshold=64 * MIB,
        critical_threshold=512 * MIB, for_seconds=900, summary="Redis memory fragmented",
        runbook="Enable activedefrag, or restart the replica/primary in a quiet window.",
    ),
    "redis_evictions": RuleInput(
        name="Redis evictions", kind=ABOVE, metric="redis_evicted_keys_per_second", warning_threshold=0.1,
        critical_threshold=10, for_seconds=120, summary="Redis is evicting keys",
        runbook="Redis is at maxmemory: raise it or reduce what is cached.",
    ),
    "queue_length": RuleInput(
        name="Celery queue backlog", kind=ABOVE, metric="celery_queue_length", warning_threshold=100,
        critical_threshold=1000, for_seconds=300, summary="Celery queue growing",
        runbook="Workers are not keeping up: add workers for this queue or find slow tasks.",
    ),
    "target_down": RuleInput(
        name="Target down", kind=AlertRule.Kind.TARGET_DOWN, severity="critical", for_seconds=60,
        eval_interval_seconds=15, summary="Target cannot be collected",
        runbook="Open the target page for the last error; check the service and credentials.",
    ),
    # Event rules fed by core.events.failure_event. A failed tuner stays firing for two hours, longer
    # than the hourly schedules, so a tuner failing at every run keeps one alert instead of flapping.
    "tuner_failure": RuleInput(
        name="Tuner failed", kind=AlertRule.Kind.TUNER_FAILURE, severity="warning", window_seconds=7200,
        summary="Optimizer run or apply failed",
        runbook="Open the optimization log for the run's error; check the target's role, timeouts and locks.",
    ),
    "scaling_failure": RuleInput(
        name="Scaling failed", kind=AlertRule.Kind.SCALING_FAILURE, severity="critical", window_seconds=300,
        summary="Scaling evaluation or action failed",
        runbook="Open the service's decisions for the executor's error; check its endpoint and credentials.",
    ),
    # A plan regression stays firing for a day: the plan capture runs every 15 minutes and finds one
    # change once, so the alert is there to be seen the next morning.
    "plan_regression": RuleInput(
        name="Plan regression", kind=AlertRule.Kind.PLAN_REGRESSION, severity="warning", window_seconds=86400,
        summary="A query's plan changed and it got slower",
        runbook="Open the plan regression (Optimizer, Database, Plan changes) to compare both plans; look for a "
        "dropped index, a role or database setting (ALTER ROLE ... SET), or stale statistics (ANALYZE).",
    ),
}  # fmt: skip


# The rules of the first version, whose install record named no keys.
FIRST_VERSION_KEYS = frozenset({
    "cpu", "memory", "disk", "disk_forecast", "pg_connections", "pg_cache_hit", "pg_replication_lag",
    "pg_long_transactions", "pg_xid_wraparound", "redis_memory", "redis_fragmentation", "redis_evictions",
    "queue_length", "target_down",
})  # fmt: skip


def rules_install_defaults() -> list[str]:
    """Install the default rules not installed before; never again, so deleted ones stay deleted."""
    with transaction.atomic():
        installed: set[str] = set()
        for detail in AuditEvent.objects.filter(action=INSTALLED_ACTION).values_list("detail", flat=True):
            installed |= set(detail.get("keys", FIRST_VERSION_KEYS))
        missing = [key for key in DEFAULT_RULES if key not in installed]
        if not missing:
            return []
        created = []
        for key in missing:
            if AlertRule.objects.filter(builtin_key=key).exists():
                continue
            data = RuleInput(**vars(DEFAULT_RULES[key]))
            rule = rule_create(data=data, actor=None, via="system", builtin_key=key)
            created.append(rule.name)
        audit_record(actor=None, via="system", action=INSTALLED_ACTION, detail={"rules": created, "keys": missing})
    return created
