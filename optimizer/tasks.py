"""Optimizer tasks (queue "maintenance"). Thin: each calls one service.

Each tuner has its own task for its beat schedule; with no target it runs on every enabled target
of a kind the tuner works on. A schedule's kwargs may hold dry_run, maintenance_window and the
tuner's own parameters.
"""

from __future__ import annotations

from celery import shared_task

from optimizer.services.runs import run_execute, scheduled_runs
from optimizer.services.speedups import speedups_measure_all


@shared_task(name="optimizer.tasks.execute_run_task", ignore_result=True)
def execute_run_task(run_id: int) -> None:
    run_execute(run_id=run_id)


@shared_task(name="optimizer.tasks.vacuum_task", ignore_result=True)
def vacuum_task(target_id: int | None = None, dry_run: bool = False, **params) -> None:
    scheduled_runs(tuner="vacuum", target_id=target_id, dry_run=dry_run, params=params)


@shared_task(name="optimizer.tasks.advise_indexes_task", ignore_result=True)
def advise_indexes_task(target_id: int | None = None, dry_run: bool = False, **params) -> None:
    scheduled_runs(tuner="indexes", target_id=target_id, dry_run=dry_run, params=params)


@shared_task(name="optimizer.tasks.measure_speedups_task", ignore_result=True)
def measure_speedups_task() -> None:
    speedups_measure_all()


@shared_task(name="optimizer.tasks.advise_config_task", ignore_result=True)
def advise_config_task(target_id: int | None = None, dry_run: bool = False, **params) -> None:
    scheduled_runs(tuner="pgconfig", target_id=target_id, dry_run=dry_run, params=params)


@shared_task(name="optimizer.tasks.compact_cache_task", ignore_result=True)
def compact_cache_task(target_id: int | None = None, dry_run: bool = False, **params) -> None:
    scheduled_runs(tuner="cache", target_id=target_id, dry_run=dry_run, params=params)


@shared_task(name="optimizer.tasks.advise_vectors_task", ignore_result=True)
def advise_vectors_task(target_id: int | None = None, dry_run: bool = False, **params) -> None:
    scheduled_runs(tuner="vectors", target_id=target_id, dry_run=dry_run, params=params)
