"""Editing a tuner's beat schedule from the Optimizer page: when it runs, its maintenance window, dry-run."""

from __future__ import annotations

import json

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django_celery_beat.models import CrontabSchedule, PeriodicTask
from django_celery_beat.validators import crontab_validator

from core.errors import InvalidInput
from core.services import audit_record
from optimizer.services.runs import parse_window


@transaction.atomic
def tuner_schedule_update(
    *,
    periodic_task: PeriodicTask,
    crontab: str,
    maintenance_window: str,
    dry_run: bool,
    actor: AbstractBaseUser,
    via: str,
) -> PeriodicTask:
    if not periodic_task.task.startswith("optimizer.tasks."):
        raise InvalidInput("Only optimizer schedules are edited here.", field="crontab")
    crontab = " ".join(crontab.split())
    try:
        crontab_validator(crontab)
        minute, hour, day_of_month, month_of_year, day_of_week = crontab.split()
    except Exception as exc:  # the validator raises ValidationError; a wrong field count, ValueError
        reason = "; ".join(getattr(exc, "messages", None) or [str(exc)])
        raise InvalidInput(
            f"A crontab has 5 fields (minute hour day month weekday), e.g. '30 2 * * *' ({reason}).", field="crontab"
        ) from exc
    parse_window(maintenance_window)
    periodic_task.crontab, _ = CrontabSchedule.objects.get_or_create(
        minute=minute,
        hour=hour,
        day_of_month=day_of_month,
        month_of_year=month_of_year,
        day_of_week=day_of_week,
        timezone=settings.TIME_ZONE,
    )
    periodic_task.interval = None
    kwargs = json.loads(periodic_task.kwargs or "{}")
    kwargs["dry_run"] = dry_run
    if maintenance_window.strip():
        kwargs["maintenance_window"] = maintenance_window.strip()
    else:
        kwargs.pop("maintenance_window", None)
    periodic_task.kwargs = json.dumps(kwargs)
    periodic_task.save()
    audit_record(
        actor=actor,
        via=via,
        action="schedule.update",
        object_repr=periodic_task.name,
        detail={"crontab": crontab, "kwargs": kwargs},
    )
    return periodic_task
