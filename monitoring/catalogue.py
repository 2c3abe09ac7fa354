"""What each built-in metric is: a readable title, its unit and one line on what it means.

Charts title themselves and format their axes from here, so a page never shows a raw name such as
`postgres_blocked_sessions`. Every metric the collectors (monitoring/collectors/) and the collection
itself store is listed; tests/monitoring/test_catalogue.py fails when a collector adds one that is not.
Metrics a Prometheus target or a push brings are described by `metric_info` from their name alone.

Units are the ones the collectors store (`Measurement.unit`): "%", "bytes", "bytes/s", "/s", "s", or ""
for a plain count; core.charts formats axes from them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MetricInfo:
    title: str
    unit: str
    meaning: str


CATALOGUE: dict[str, MetricInfo] = {
    # Every target: written by the collection itself (monitoring/services/collection.py).
    "up": MetricInfo("Up", "", "1 when the last collection read the target, 0 when it failed"),
    "collect_duration_seconds": MetricInfo("Collection time", "s", "How long reading the target took"),
    # Host (monitoring/collectors/host.py)
    "host_cpu_percent": MetricInfo("CPU busy", "%", "Time the CPUs were not idle; cpu=total averages all cores"),
    "host_load1": MetricInfo("Load, 1 minute", "", "Runnable and waiting processes, averaged over 1 minute"),
    "host_load5": MetricInfo("Load, 5 minutes", "", "Runnable and waiting processes, averaged over 5 minutes"),
    "host_load15": MetricInfo("Load, 15 minutes", "", "Runnable and waiting processes, averaged over 15 minutes"),
    "host_memory_used_percent": MetricInfo("Memory used", "%", "Memory in use, not counting reclaimable cache"),
    "host_swap_used_percent": MetricInfo("Swap used", "%", "Share of the swap space in use"),
    "host_process_count": MetricInfo("Processes", "", "Processes running on the machine"),
    "host_disk_used_percent": MetricInfo("Disk used", "%", "Share of each file system's space in use"),
    "host_disk_read_bytes_per_second": MetricInfo("Disk reads", "bytes/s", "Bytes read from all disks"),
    "host_disk_write_bytes_per_second": MetricInfo("Disk writes", "bytes/s", "Bytes written to all disks"),
    "host_network_receive_bytes_per_second": MetricInfo(
        "Network received", "bytes/s", "Bytes received on every interface but loopback"
    ),
    "host_network_transmit_bytes_per_second": MetricInfo(
        "Network sent", "bytes/s", "Bytes sent on every interface but loopback"
    ),
    # PostgreSQL (monitoring/collectors/postgres.py)
    "postgres_connections": MetricInfo("Connections", "", "Client backends by state (active, idle, ...)"),
    "postgres_connections_used_percent": MetricInfo(
        "Connections used", "%", "Client backends as a share of max_connections"
    ),
    "postgres_commits_per_second": MetricInfo("Commits", "/s", "Transactions committed, per database"),
    "postgres_rollbacks_per_second": MetricInfo("Rollbacks", "/s", "Transactions rolled back, per database"),
    "postgres_cache_hit_ratio_percent": MetricInfo(
        "Cache hit ratio", "%", "Blocks found in shared buffers rather than read, over the interval"
    ),
    "postgres_tuple_reads_per_second": MetricInfo("Rows read", "/s", "Rows returned and fetched, per database"),
    "postgres_tuple_writes_per_second": MetricInfo(
        "Rows written", "/s", "Rows inserted, updated and deleted, per database"
    ),
    "postgres_deadlocks_per_second": MetricInfo("Deadlocks", "/s", "Deadlocks detected, per database"),
    "postgres_temp_bytes_per_second": MetricInfo(
        "Temporary files", "bytes/s", "Bytes queries spilled to temporary files (work_mem too small)"
    ),
    "postgres_database_size_bytes": MetricInfo("Database size", "bytes", "Disk space of each database"),
    "postgres_longest_query_age_seconds": MetricInfo(
        "Longest running query", "s", "Age of the oldest active query of another client"
    ),
    "postgres_oldest_transaction_age_seconds": MetricInfo(
        "Oldest open transaction", "s", "Age of the oldest open transaction; long ones hold back VACUUM"
    ),
    "postgres_blocked_sessions": MetricInfo("Blocked sessions", "", "Clients waiting on a lock another one holds"),
    "postgres_table_dead_tuples": MetricInfo("Dead rows", "", "Dead rows per table, waiting for VACUUM"),
    "postgres_table_dead_tuple_ratio_percent": MetricInfo(
        "Dead row ratio", "%", "Dead rows as a share of each table's rows"
    ),
    "postgres_xid_wraparound_percent": MetricInfo(
        "Transaction ID wraparound", "%", "Oldest unfrozen transaction ID's age, as a share of the 2^31 limit"
    ),
    "postgres_mxid_wraparound_percent": MetricInfo(
        "Multixact ID wraparound", "%", "Oldest unfrozen multixact ID's age, as a share of the 2^31 limit"
    ),
    "postgres_replication_lag_bytes": MetricInfo("Replication lag", "bytes", "WAL a replica has yet to replay"),
    "postgres_replication_lag_seconds": MetricInfo(
        "Replication lag time", "s", "How far behind the primary a replica's replay is"
    ),
    "postgres_sequence_used_percent": MetricInfo(
        "Sequence used", "%", "How much of its range a sequence (and the key column it feeds) has used up"
    ),
    "postgres_checkpoints_timed_per_second": MetricInfo(
        "Scheduled checkpoints", "/s", "Checkpoints started by checkpoint_timeout"
    ),
    "postgres_checkpoints_requested_per_second": MetricInfo(
        "Requested checkpoints", "/s", "Checkpoints forced early, usually by max_wal_size"
    ),
    # Redis (monitoring/collectors/redis.py)
    "redis_used_memory_bytes": MetricInfo("Memory used", "bytes", "Memory Redis allocated for its data"),
    "redis_used_memory_rss_bytes": MetricInfo("Resident memory", "bytes", "Memory the operating system gave Redis"),
    "redis_mem_fragmentation_ratio": MetricInfo(
        "Memory fragmentation ratio", "", "Resident memory divided by memory used; well above 1 means fragmentation"
    ),
    "redis_allocator_frag_ratio": MetricInfo("Allocator fragmentation ratio", "", "jemalloc's own fragmentation ratio"),
    "redis_allocator_frag_bytes": MetricInfo("Allocator fragmentation", "bytes", "Bytes lost to fragmentation"),
    "redis_connected_clients": MetricInfo("Clients", "", "Client connections open"),
    "redis_blocked_clients": MetricInfo("Blocked clients", "", "Clients waiting in a blocking command (BLPOP, ...)"),
    "redis_ops_per_second": MetricInfo("Commands", "/s", "Commands processed"),
    "redis_evicted_keys_per_second": MetricInfo(
        "Evicted keys", "/s", "Keys removed to stay under maxmemory; data the application lost"
    ),
    "redis_expired_keys_per_second": MetricInfo("Expired keys", "/s", "Keys removed because their TTL passed"),
    "redis_hit_ratio_percent": MetricInfo("Hit ratio", "%", "Lookups that found their key, over the interval"),
    "redis_keys": MetricInfo("Keys", "", "Keys per database"),
    "redis_keys_with_ttl": MetricInfo("Keys with a TTL", "", "Keys per database that will expire"),
    "redis_replication_lag_bytes": MetricInfo(
        "Replication lag", "bytes", "Replication stream a replica has yet to receive"
    ),
    # Celery (monitoring/collectors/celery.py)
    "celery_queue_length": MetricInfo("Queue length", "", "Messages waiting in each queue"),
    "celery_workers_online": MetricInfo("Workers online", "", "Workers answering a ping"),
    "celery_tasks_active": MetricInfo("Tasks running", "", "Tasks executing now, over all workers"),
    "celery_tasks_reserved": MetricInfo("Tasks reserved", "", "Tasks prefetched by workers, waiting to run"),
    "celery_tasks_succeeded_per_second": MetricInfo("Tasks succeeded", "/s", "Tasks that finished successfully"),
    "celery_tasks_failed_per_second": MetricInfo("Tasks failed", "/s", "Tasks that raised an exception"),
    "celery_tasks_retried_per_second": MetricInfo("Tasks retried", "/s", "Tasks scheduled for another try"),
    "celery_task_runtime_seconds": MetricInfo("Task run time", "s", "Run time of succeeded tasks, by quantile"),
    "celery_worker_tasks_processed_per_second": MetricInfo(
        "Tasks processed", "/s", "Tasks each worker took, whatever their outcome"
    ),
    # Perfpilot's own events (monitoring/collectors/perfpilot.py)
    "perfpilot_optimizer_runs_total": MetricInfo(
        "Optimizer runs", "", "Tuner runs and applies ended, by tuner, target and status (a counter)"
    ),
    "perfpilot_scaling_decisions_total": MetricInfo(
        "Scaling decisions", "", "Decisions recorded, by service and result (a counter)"
    ),
    "perfpilot_alert_firings_total": MetricInfo(
        "Alert firings", "", "Alerts that started firing, by rule and severity (a counter)"
    ),
    "perfpilot_notification_deliveries_total": MetricInfo(
        "Notification deliveries", "", "Delivery attempts by channel and outcome: sent, retry, failed (a counter)"
    ),
    "perfpilot_recommendations": MetricInfo("Recommendations", "", "Recommendations in each status, per target"),
    "perfpilot_alerts_firing": MetricInfo("Alerts firing", "", "Alerts firing now, by rule and severity"),
    "perfpilot_scaling_current_replicas": MetricInfo("Current replicas", "", "Replicas a service runs now"),
    "perfpilot_scaling_desired_replicas": MetricInfo(
        "Desired replicas", "", "Replicas the service's last scaling decision chose"
    ),
    "perfpilot_scaling_min_replicas": MetricInfo("Minimum replicas", "", "The service's lower bound"),
    "perfpilot_scaling_max_replicas": MetricInfo("Maximum replicas", "", "The service's upper bound"),
    "perfpilot_scaling_rule_value": MetricInfo(
        "Scaling metric", "", "The value a scaling rule read at the service's last decision"
    ),
    "perfpilot_scaling_rule_target": MetricInfo("Scaling target", "", "The value a scaling rule aims for"),
    "perfpilot_optimizer_speedup_ratio": MetricInfo(
        "Observed speed-up", "", "Mean time of the advised queries before an applied index, divided by after"
    ),
    "perfpilot_optimizer_query_mean_seconds": MetricInfo(
        "Query mean time", "s", "Mean time of the queries an applied index served, before and after"
    ),
}


def metric_info(name: str, unit: str = "") -> MetricInfo:
    """The catalogue's entry, or for a metric it does not know (Prometheus, pushed) its own name and stored unit."""
    return CATALOGUE.get(name) or MetricInfo(name, unit, "")
