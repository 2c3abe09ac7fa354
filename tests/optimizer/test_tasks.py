"""Tuner tasks on their beat schedules, sent to the real worker with the schedule's stored kwargs."""

from __future__ import annotations

import json

import pytest
from django.core.management import call_command
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from core.services import schedule_run_now, schedule_sync_defaults
from optimizer.models import OptimizationRun
from optimizer.selectors import tuner_overview
from optimizer.tuners.base import all_tuners
from optimizer.tuners.vacuum import VacuumTuner
from tests.core.test_registry import BUILTIN_TUNERS
from tests.optimizer.conftest import dead_tuples, make_dead_tuples, make_invalid_index, make_target, wait_for


def test_the_sync_installs_each_tuners_declared_schedule_as_the_generic_task_naming_the_tuner(db):
    assert set(all_tuners()) == BUILTIN_TUNERS
    created = schedule_sync_defaults()
    for kind, cls in all_tuners().items():
        assert cls.schedule.name in created, kind
        task = PeriodicTask.objects.select_related("crontab").get(name=cls.schedule.name)
        assert task.task == "optimizer.tasks.run_tuner_task"
        assert json.loads(task.kwargs) == {"tuner": kind}
        assert task.queue == "maintenance"
        assert task.description == cls.schedule.description
        crontab = task.crontab
        fields = (crontab.minute, crontab.hour, crontab.day_of_month, crontab.month_of_year, crontab.day_of_week)
        assert " ".join(fields) == cls.schedule.crontab
    assert {row.kind: [s.name for s in row.schedules] for row in tuner_overview()} == {
        kind: [cls.schedule.name] for kind, cls in all_tuners().items()
    }
    assert schedule_sync_defaults() == []  # installed once, then the operator's to edit


@pytest.mark.celery_worker
def test_a_scheduled_vacuum_outside_its_window_is_deferred_and_changes_nothing(
    transactional_db, celery_worker_process, operator_user, pg18
):
    make_dead_tuples(pg18, "public", "scheduled_dead", rows=3000, deleted=2000)
    target = make_target(pg18)
    schedule_sync_defaults()
    task = PeriodicTask.objects.get(name=VacuumTuner.schedule.name)
    hour = (timezone.localtime().hour + 3) % 24
    task.kwargs = json.dumps(
        {
            "tuner": "vacuum",
            "target_id": target.id,
            "maintenance_window": f"{hour:02d}:00-{(hour + 1) % 24:02d}:00",
            "min_dead_tuples": 100,
            "tables": ["public.scheduled_dead"],
        }
    )
    task.save()
    schedule_run_now(periodic_task=task, actor=operator_user, via="ui")
    wait_for(lambda: OptimizationRun.objects.filter(target=target).exists(), timeout=60, what="the scheduled run")
    wait_for(lambda: not OptimizationRun.objects.get(target=target).is_live, timeout=60, what="the run to end")
    run = OptimizationRun.objects.get(target=target)
    assert run.trigger == "schedule" and run.status == "deferred", run.error
    assert "Outside the maintenance window" in run.error
    assert dead_tuples(pg18, "public", "scheduled_dead") >= 2000


def test_run_tuner_command_runs_a_dry_run_and_prints_the_statements(db, pg18, capsys):
    make_dead_tuples(pg18, "public", "command_dead", rows=3000, deleted=2000)
    target = make_target(pg18)
    call_command(
        "run_tuner",
        "vacuum",
        target.name,
        "--dry-run",
        "--param",
        "min_dead_tuples=100",
        "--param",
        'tables=["public.command_dead"]',
    )
    out = capsys.readouterr().out
    assert 'VACUUM (ANALYZE) "public"."command_dead"  (dry run)' in out
    assert "succeeded" in out
    assert OptimizationRun.objects.get(target=target).trigger == "operator"


@pytest.mark.celery_worker
def test_an_auto_policy_applies_the_chosen_categories_after_the_run(transactional_db, celery_worker_process, pg18):
    from optimizer.models import Recommendation
    from optimizer.services.runs import run_create, run_execute

    make_invalid_index(pg18, "policy_t", "policy_bad")
    target = make_target(pg18)
    run = run_create(
        tuner="indexes",
        target=target,
        trigger="schedule",
        actor=None,
        dry_run=False,
        params={"auto_apply": ["invalid_index"]},
    )
    run = run_execute(run_id=run.id)
    assert "auto policy: applying 1 recommendation(s)" in run.summary
    wait_for(
        lambda: OptimizationRun.objects.filter(target=target, trigger="policy", status="succeeded").exists(),
        timeout=60,
        what="the policy apply",
    )
    assert Recommendation.objects.get(target=target, category="invalid_index").status == "applied"
    assert pg18.scalar("SELECT count(*) FROM pg_class WHERE relname = 'policy_bad'") == 0
    assert (
        not OptimizationRun.objects.filter(target=target, trigger="policy")
        .exclude(recommendation__category="invalid_index")
        .exists()
    )
