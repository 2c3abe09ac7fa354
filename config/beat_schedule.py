"""The default beat schedule: the one place where the project's own periodic tasks are declared.

Plug-ins declare theirs beside their code (each tuner's `schedule`, with its comment) and register
them in the core registry. Every entry is synced into django-celery-beat on start
(`core.services.schedule_sync_defaults`) when it does not exist yet; after that the database row is
the user's to edit, enable or disable.
"""

from __future__ import annotations

from django.conf import settings

from core.schedules import DefaultSchedule

DEFAULT_SCHEDULES: tuple[DefaultSchedule, ...] = (
    # Daily at 03:17: drop expired login sessions so the session table stays small.
    DefaultSchedule(
        name="Clear expired sessions",
        task="core.tasks.clear_sessions_task",
        description="Deletes expired login sessions from the database.",
        crontab="17 3 * * *",
    ),
    # Every minute: roll the newest raw samples (and late ones) up into 1-minute and 1-hour buckets.
    DefaultSchedule(
        name="Roll up samples",
        task="monitoring.tasks.rollup_task",
        description="Computes 1-minute and 1-hour min/max/avg buckets from new and late raw samples.",
        every_seconds=60,
    ),
    # Every 5 s: send stored samples on to PERFPILOT_FORWARD_REMOTE_WRITE_URL (returns at once when it is
    # empty). A run sends until the queue is empty or a send fails (then it waits out the back-off);
    # one at a time under a lock. On the default queue, away from long maintenance runs.
    DefaultSchedule(
        name="Forward samples (remote write)",
        task="monitoring.tasks.forward_samples_task",
        description="Sends stored samples to the remote-write endpoint, retrying with back-off.",
        every_seconds=5,
        queue="default",
        expire_seconds=5,
    ),
    # Daily at 03:41 (quiet, and away from the session cleanup): drop raw day partitions and
    # rollups past their retention (PERFPILOT_RETENTION_RAW_DAYS, _1M_DAYS, _1H_DAYS).
    DefaultSchedule(
        name="Prune old metrics",
        task="monitoring.tasks.retention_task",
        description="Drops raw sample partitions and deletes rollups older than their retention.",
        crontab="41 3 * * *",
    ),
    # Every 5 minutes: measure the observed speed-up of applied indexes from new statement snapshots.
    DefaultSchedule(
        name="Optimizer: measure applied indexes",
        task="optimizer.tasks.measure_speedups_task",
        description="Compares affected queries' mean time before and after an applied index.",
        every_seconds=300,
        queue="maintenance",
    ),
    # Every 30 s: end optimizer runs whose worker is gone (no heartbeat, lock owner dead) and pending
    # runs no task will start, as "interrupted"; cancel what they left running on the target. On the
    # default queue, so long maintenance runs never hold it up.
    DefaultSchedule(
        name="Optimizer: end interrupted runs",
        task="optimizer.tasks.reap_runs_task",
        description="Ends runs whose worker died or whose task was lost, and cancels their statements on targets.",
        every_seconds=30,
        queue="default",
        expire_seconds=30,
    ),
    # Every PERFPILOT_SCALING_INTERVAL seconds (15 by default, the HPA's sync period): evaluate every
    # enabled scaled service and act through its executor (one decision per service per tick).
    DefaultSchedule(
        name="Evaluate scaling",
        task="scaling.tasks.evaluate_all_task",
        description="Evaluates every enabled scaled service's rules and scales it (or records a dry run).",
        every_seconds=settings.SCALING_INTERVAL_SECONDS,
        queue="scale",
    ),
    # Daily at 03:53: delete scaling decisions older than PERFPILOT_SCALING_DECISION_RETENTION_DAYS.
    DefaultSchedule(
        name="Prune scaling decisions",
        task="scaling.tasks.prune_decisions_task",
        description="Deletes scaling decisions past their retention.",
        crontab="53 3 * * *",
        queue="scale",
    ),
    # Every second: evaluate the alert rules whose own interval (eval_interval_seconds) has passed,
    # and queue repeats of firing alerts; a tick that finds the previous one still running skips.
    DefaultSchedule(
        name="Evaluate alert rules",
        task="alerts.tasks.evaluate_rules_task",
        description="Evaluates due alert rules, moves alerts between states and queues their notifications.",
        every_seconds=1,
        queue="notify",
        expire_seconds=5,
    ),
    # Every 5 s: the delivery safety net: reclaim rows of workers that died mid-send and queue
    # every notification that is due (retries, group waits, channels enabled again).
    DefaultSchedule(
        name="Sweep alert notifications",
        task="alerts.tasks.sweep_notifications_task",
        description="Queues due notifications and retries deliveries interrupted by a dead worker.",
        every_seconds=5,
        queue="notify",
        expire_seconds=30,
    ),
)
