"""The reaper's rules (optimizer.services.liveness): which runs it ends as interrupted, and which it
leaves alone. The SIGKILL cases, with real workers and targets, are in test_chaos.py."""

from __future__ import annotations

import typing
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from core.locks import lock_acquire, lock_key
from core.models import AuditEvent
from optimizer.models import OptimizationRun, Recommendation
from optimizer.schemas import RecommendationStatus, RunStatus
from optimizer.services.liveness import RunHeartbeat, runs_reap
from optimizer.services.runs import run_create
from tests.optimizer.conftest import make_target, wait_for

ELSEWHERE = {"host": "another-host", "pid": 4242, "started": 1.0, "task_id": "t-1"}


@pytest.fixture
def target(db, pg18):
    return make_target(pg18)


def _running(target, *, heartbeat_ago: float, owner=ELSEWHERE, **fields) -> OptimizationRun:
    run = run_create(tuner="vacuum", target=target, trigger="api", actor=None, dry_run=True)
    beat = timezone.now() - timedelta(seconds=heartbeat_ago)
    OptimizationRun.objects.filter(pk=run.pk).update(status="running", owner=owner, heartbeat_at=beat, **fields)
    return run


def test_a_running_run_without_a_heartbeat_past_the_deadline_and_without_its_lock_is_interrupted(target):
    statements = [{"statement": "VACUUM a", "duration_ms": 3.0}, {"statement": "VACUUM b", "in_progress": True}]
    run = _running(target, heartbeat_ago=settings.OPTIMIZER_RUN_STALE_SECONDS + 5, statements=statements)
    assert runs_reap().interrupted == [run.id]
    run.refresh_from_db()
    assert run.status == "interrupted" and run.finished_at is not None
    assert run.error.startswith("Interrupted: the worker running it (pid 4242 on another-host, task t-1) stopped")
    assert "1 statement(s) had completed." in run.error
    assert run.statements == [
        {"statement": "VACUUM a", "duration_ms": 3.0},
        {"statement": "VACUUM b", "interrupted": True},
    ]
    assert AuditEvent.objects.filter(action="optimizer.run", result="failed", detail__status="interrupted").exists()
    assert runs_reap().interrupted == []  # once


def test_a_run_with_a_fresh_heartbeat_or_still_holding_its_lock_is_left_alone(target):
    fresh = _running(target, heartbeat_ago=5)
    stale_but_locked = _running(target, heartbeat_ago=settings.OPTIMIZER_RUN_STALE_SECONDS + 5)
    with lock_acquire(lock_key("optimize", target.id), label=f"run {stale_but_locked.id}"):
        assert runs_reap().interrupted == []
    assert set(OptimizationRun.objects.values_list("status", flat=True)) == {"running"}
    assert runs_reap().interrupted == [stale_but_locked.id]  # its lock is gone now
    assert OptimizationRun.objects.get(pk=fresh.pk).status == "running"


def test_a_pending_run_no_task_touched_within_the_timeout_is_interrupted_and_a_waiting_one_is_not(target):
    old = timezone.now() - timedelta(seconds=settings.OPTIMIZER_PENDING_TIMEOUT_SECONDS + 60)
    lost = run_create(tuner="vacuum", target=target, trigger="api", actor=None, dry_run=True)
    waiting = run_create(tuner="vacuum", target=target, trigger="api", actor=None, dry_run=True)
    run_create(tuner="vacuum", target=target, trigger="api", actor=None, dry_run=True)  # created just now
    OptimizationRun.objects.filter(pk__in=[lost.pk, waiting.pk]).update(created_at=old)
    OptimizationRun.objects.filter(pk=waiting.pk).update(heartbeat_at=timezone.now())  # retried just now
    assert runs_reap().interrupted == [lost.id]
    lost.refresh_from_db()
    assert lost.status == "interrupted"
    assert lost.error.startswith("Interrupted before it started: no worker took it within 15 minutes")
    assert set(OptimizationRun.objects.exclude(pk=lost.pk).values_list("status", flat=True)) == {"pending"}


def test_an_interrupted_apply_gives_its_recommendation_back_open_with_the_reason(target):
    recommendation = Recommendation.objects.create(
        target=target, tuner="indexes", fingerprint="fp", category="invalid_index", title="t",
        statement="SELECT 1", status="applying",
    )  # fmt: skip
    run = _running(
        target, heartbeat_ago=settings.OPTIMIZER_RUN_STALE_SECONDS + 5, action="apply", recommendation=recommendation
    )
    assert runs_reap().interrupted == [run.id]
    recommendation.refresh_from_db()
    assert recommendation.status == "open"
    assert recommendation.apply_error.startswith("Interrupted: the worker running it")


def test_the_heartbeat_is_written_while_the_block_runs(transactional_db, pg18):
    target = make_target(pg18)
    run = _running(target, heartbeat_ago=600)
    before = OptimizationRun.objects.get(pk=run.pk).heartbeat_at
    with RunHeartbeat(run.id, every=0.1):
        wait_for(lambda: OptimizationRun.objects.get(pk=run.pk).heartbeat_at > before, what="a heartbeat")


def test_the_api_publishes_every_status_the_models_have():
    assert set(typing.get_args(RunStatus)) == set(OptimizationRun.Status.values)
    assert set(typing.get_args(RecommendationStatus)) == set(Recommendation.Status.values)
