"""The default beat schedule: the one place where built-in periodic tasks are declared.

Each entry is synced into django-celery-beat on start (`manage.py sync_schedules`) when it
does not exist yet; after that the database row is the user's to edit, enable or disable.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings


@dataclass(frozen=True)
class DefaultSchedule:
    name: str
    task: str
    description: str
    every_seconds: int | None = None
    crontab: str | None = None  # "minute hour day_of_month month_of_year day_of_week"
    queue: str | None = None


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
)
