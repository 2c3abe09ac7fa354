"""Optimizer tasks (queue "maintenance"). Thin: each calls one service.

One task runs any tuner for its beat schedules (the schedule's kwargs name the tuner); with no
target it runs on every enabled target of a kind the tuner works on. A schedule's kwargs may also
hold dry_run, maintenance_window and the tuner's own parameters.
"""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from optimizer.services.explain import explain_analyze_execute
from optimizer.services.liveness import runs_reap
from optimizer.services.runs import run_execute, run_time_limit, scheduled_runs
from optimizer.services.speedups import speedups_measure_all
from optimizer.tuners.base import RUN_TUNER_TASK

# The task's limits must not cut an action short (a soft limit is recorded on the run as a failure).
LIMITS = {"soft_time_limit": run_time_limit(), "time_limit": run_time_limit() + 30}
LOCK_RETRIES = 120  # a run waits up to ~10 minutes for another run on its target
LOCK_RETRY_SECONDS = 5


@shared_task(name="optimizer.tasks.execute_run_task", ignore_result=True, bind=True, max_retries=LOCK_RETRIES, **LIMITS)
def execute_run_task(self, run_id: int) -> None:
    run = run_execute(run_id=run_id, wait=self.request.retries < LOCK_RETRIES)
    if run.status == run.Status.PENDING:  # another run holds the target: queue behind it
        raise self.retry(countdown=LOCK_RETRY_SECONDS)


@shared_task(name=RUN_TUNER_TASK, ignore_result=True, **LIMITS)
def run_tuner_task(tuner: str, target_id: int | None = None, dry_run: bool = False, **params) -> None:
    scheduled_runs(tuner=tuner, target_id=target_id, dry_run=dry_run, params=params)


# EXPLAIN ANALYZE stops at its own statement_timeout (at most PERFPILOT_EXPLAIN_ANALYZE_TIMEOUT); the
# task's limits leave room for connecting and writing the result.
@shared_task(
    name="optimizer.tasks.explain_analyze_task",
    ignore_result=True,
    soft_time_limit=settings.EXPLAIN_ANALYZE_TIMEOUT_SECONDS + 60,
    time_limit=settings.EXPLAIN_ANALYZE_TIMEOUT_SECONDS + 90,
)
def explain_analyze_task(run_id: int) -> None:
    explain_analyze_execute(run_id=run_id)


@shared_task(name="optimizer.tasks.measure_speedups_task", ignore_result=True)
def measure_speedups_task() -> None:
    speedups_measure_all()


@shared_task(name="optimizer.tasks.reap_runs_task", ignore_result=True)
def reap_runs_task() -> None:
    runs_reap()
