"""Tuners run through one generic task (optimizer.tasks.run_tuner_task) instead of one task each:
schedules saved under the old task names are rewritten to it, with the tuner named in their kwargs.
Their other kwargs, enabled flag and schedule stay as the user left them."""

import json

from django.db import migrations
from django.utils import timezone

RUN_TUNER_TASK = "optimizer.tasks.run_tuner_task"
OLD_TASK_TUNERS = {
    "optimizer.tasks.vacuum_task": "vacuum",
    "optimizer.tasks.advise_indexes_task": "indexes",
    "optimizer.tasks.advise_config_task": "pgconfig",
    "optimizer.tasks.compact_cache_task": "cache",
    "optimizer.tasks.advise_vectors_task": "vectors",
}


def _rewrite(apps, rewrite) -> None:
    """Save each schedule `rewrite(task, kwargs)` gives a new (task, kwargs) for; None leaves it as it is."""
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    changed = False
    for periodic_task in PeriodicTask.objects.filter(task__startswith="optimizer.tasks."):
        new = rewrite(periodic_task.task, json.loads(periodic_task.kwargs or "{}"))
        if new is None:
            continue
        periodic_task.task, kwargs = new
        periodic_task.kwargs = json.dumps(kwargs)
        periodic_task.save(update_fields=["task", "kwargs"])
        changed = True
    if changed:
        # What PeriodicTask.save() signals and a historical model does not: a running beat reloads.
        PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
        PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})


def to_run_tuner_task(task: str, kwargs: dict) -> tuple[str, dict] | None:
    if task not in OLD_TASK_TUNERS:
        return None
    return RUN_TUNER_TASK, {**kwargs, "tuner": OLD_TASK_TUNERS[task]}


def to_tuner_task(task: str, kwargs: dict) -> tuple[str, dict] | None:
    task_by_tuner = {tuner: old for old, tuner in OLD_TASK_TUNERS.items()}
    if task != RUN_TUNER_TASK or kwargs.get("tuner") not in task_by_tuner:
        return None  # a tuner added later had no task of its own: its schedule stays
    return task_by_tuner[kwargs.pop("tuner")], kwargs


def forwards(apps, schema_editor):
    _rewrite(apps, to_run_tuner_task)


def backwards(apps, schema_editor):
    _rewrite(apps, to_tuner_task)


class Migration(migrations.Migration):
    dependencies = [
        ("optimizer", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
