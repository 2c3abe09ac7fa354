"""A default beat schedule as code declares it.

The project's own entries are listed in config/beat_schedule.py; plug-ins contribute theirs through
the registry (`registry.register("schedules", entry.name, entry)` in their AppConfig.ready()).
`core.services.schedule_sync_defaults` creates both in django-celery-beat.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class DefaultSchedule:
    name: str
    task: str
    description: str
    every_seconds: int | None = None
    crontab: str | None = None  # "minute hour day_of_month month_of_year day_of_week"
    queue: str | None = None
    expire_seconds: int | None = None  # a message not started within this is dropped (frequent ticks)
    kwargs: dict[str, Any] = field(default_factory=dict)  # the task's keyword arguments
