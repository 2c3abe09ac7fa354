"""The default beat schedule: the one place where built-in periodic tasks are declared.

Each entry is synced into django-celery-beat on start (`manage.py sync_schedules`) when it
does not exist yet; after that the database row is the user's to edit, enable or disable.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DefaultSchedule:
    name: str
    task: str
    description: str
    every_seconds: int | None = None
    crontab: str | None = None  # "minute hour day_of_month month_of_year day_of_week"
    queue: str | None = None
    expire_seconds: int | None = None  # a message not started within this is dropped (frequent ticks)


DEFAULT_SCHEDULES: tuple[DefaultSchedule, ...] = (
    # Daily at 03:17: drop expired login sessions so the session table stays small.
    DefaultSchedule(
        name="Clear expired sessions",
        task="config.tasks.clear_sessions_task",
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
    # Daily at 03:41 (quiet, and away from the session cleanup): drop raw day partitions and
    # rollups past their retention (PERFPILOT_RETENTION_RAW_DAYS, _1M_DAYS, _1H_DAYS).
    DefaultSchedule(
        name="Prune old metrics",
        task="monitoring.tasks.retention_task",
        description="Drops raw sample partitions and deletes rollups older than their retention.",
        crontab="41 3 * * *",
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
