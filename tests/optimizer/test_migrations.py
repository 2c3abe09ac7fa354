"""Data migrations of the optimizer, run on rows as an existing installation has them."""

from __future__ import annotations

import importlib
import json

from django.apps import apps
from django_celery_beat.models import PeriodicTask

from core.services import crontab_get_or_create, schedule_sync_defaults
from optimizer.selectors import tuner_overview

run_tuner_task_migration = importlib.import_module("optimizer.migrations.0002_run_tuner_task")


def test_a_schedule_of_an_old_tuner_task_is_rewritten_to_the_generic_task_keeping_the_users_settings(db):
    users_crontab = crontab_get_or_create(expression="15 1 * * 1")
    edited = PeriodicTask.objects.create(
        name="Optimizer: VACUUM / ANALYZE",
        task="optimizer.tasks.vacuum_task",
        kwargs=json.dumps({"dry_run": True, "min_dead_tuples": 100}),
        crontab=users_crontab,
        queue="maintenance",
        enabled=False,
    )
    other = PeriodicTask.objects.create(
        name="Optimizer: measure applied indexes",
        task="optimizer.tasks.measure_speedups_task",
        crontab=users_crontab,
    )

    run_tuner_task_migration.forwards(apps, None)

    edited.refresh_from_db()
    assert edited.task == "optimizer.tasks.run_tuner_task"
    assert json.loads(edited.kwargs) == {"tuner": "vacuum", "dry_run": True, "min_dead_tuples": 100}
    assert (edited.enabled, edited.crontab_id, edited.queue) == (False, users_crontab.id, "maintenance")
    other.refresh_from_db()
    assert other.task == "optimizer.tasks.measure_speedups_task"
    # The sync sees the user's row under its name and adds no second one; the Optimizer page finds it.
    assert "Optimizer: VACUUM / ANALYZE" not in schedule_sync_defaults()
    (vacuum,) = [row for row in tuner_overview() if row.kind == "vacuum"]
    assert vacuum.schedules == [edited]

    run_tuner_task_migration.backwards(apps, None)

    edited.refresh_from_db()
    assert edited.task == "optimizer.tasks.vacuum_task"
    assert json.loads(edited.kwargs) == {"dry_run": True, "min_dead_tuples": 100}
