"""Editing a tuner's beat schedule from the Optimizer page: when it runs, its maintenance window, dry-run."""

from __future__ import annotations

import json

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django_celery_beat.models import PeriodicTask

from core.errors import InvalidInput
from core.services import audit_record, crontab_get_or_create
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
    schedule = crontab_get_or_create(expression=crontab)  # a bad one raises InvalidInput
    parse_window(maintenance_window)  # a bad one raises too, and the atomic block drops a new crontab row
    periodic_task.crontab = schedule
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
