"""End to end: a real Celery worker's pool grows under a queue backlog the test builds, and shrinks
when it drains, through the collector, the evaluator and the Celery executor.

The worker is a process of its own app (tests/scaling/celery_app.py), queue and node name, prefork
with one process; the project's own worker (if the session started one) is never touched.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from django.conf import settings

from core.redis_client import celery_queue_lengths, get_redis
from monitoring.models import Target
from monitoring.services.collection import collect_target
from monitoring.services.targets import TargetInput, target_create
from scaling.executors.base import ExecutorContext, ExecutorError, executor_for
from scaling.models import ScalingDecision
from scaling.services.crud import ServiceInput, rule_upsert, service_create
from scaling.services.evaluation import service_evaluate
from tests.conftest import ARTIFACTS, ROOT
from tests.scaling.test_executors_gunicorn import wait_until

pytestmark = pytest.mark.usefixtures("clean_samples")


class Worker:
    def __init__(self, *, autoscale: str | None = None) -> None:
        self.queue = f"scaling-e2e-{os.getpid()}-{time.monotonic_ns()}"
        self.name = f"{self.queue}@perfpilot-test"
        argv = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "tests.scaling.celery_app",
            "worker",
            "--pool",
            "prefork",
            "--concurrency",
            "1",
            "--queues",
            self.queue,
            "--hostname",
            self.name,
            "--loglevel",
            "INFO",
            "--without-mingle",
            "--without-gossip",
        ]
        if autoscale:
            argv += ["--autoscale", autoscale]
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.log = (ARTIFACTS / "scaling-celery-worker.log").open("w")
        env = {**os.environ, "SCALING_E2E_BROKER": settings.REDIS_URL, "SCALING_E2E_QUEUE": self.queue}
        self.process = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.executor = executor_for(
            "celery",
            {"broker_url": settings.REDIS_URL, "worker": self.name, "timeout_seconds": 2},
            context=ExecutorContext(service="e2e"),
        )

    def processes(self) -> int | None:
        try:
            return self.executor.current()
        except ExecutorError:
            return None

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()
        get_redis().delete(self.queue)


@pytest.fixture
def worker():
    started = Worker()
    try:
        wait_until(lambda: started.processes() == 1, timeout=60, what="the e2e Celery worker")
        yield started
    finally:
        started.stop()


@pytest.fixture
def autoscale_worker():
    started = Worker(autoscale="3,1")
    try:
        wait_until(lambda: started.processes() is not None, timeout=60, what="the e2e autoscale worker")
        yield started
    finally:
        started.stop()


def _backlog(worker: Worker) -> int:
    return celery_queue_lengths(get_redis(), [worker.queue])[worker.queue]


def test_celery_pool_grows_under_a_backlog_and_shrinks_when_it_drains(worker):
    from tests.scaling.celery_app import app

    target = target_create(
        data=TargetInput(
            name="e2e-broker",
            kind=Target.Kind.CELERY,
            url=settings.REDIS_URL,
            options={"queues": [worker.queue], "event_window_seconds": 0.2},
        ),
        actor=None,
        via="system",
    )
    service = service_create(
        data=ServiceInput(
            name="e2e-workers",
            executor_kind="celery",
            min_replicas=1,
            max_replicas=4,
            enabled=True,
            dry_run=False,
            executor_config={"broker_url": settings.REDIS_URL, "worker": worker.name, "timeout_seconds": 2},
            scale_down_stabilization_seconds=0,
        ),
        actor=None,
        via="system",
    )
    rule_upsert(
        service=service,
        name="backlog",
        actor=None,
        via="system",
        data={
            "source": "queue_length",
            "target_id": target.id,
            "labels": {"queue": worker.queue},
            "target_value": 2,
            "target_type": "average",
        },
    )

    app.conf.broker_url = settings.REDIS_URL
    for _ in range(14):
        app.send_task("scaling_e2e.sleep", args=[0.4], queue=worker.queue)
    assert _backlog(worker) >= 10
    assert collect_target(target=target).ok

    grown = service_evaluate(service=service)
    assert grown.result == ScalingDecision.Result.SCALED, grown.explanation
    assert grown.current_replicas == 1 and grown.desired_replicas == 4
    assert any("pool_grow 3" in step for step in grown.explanation)
    wait_until(lambda: worker.processes() == 4, what="the pool to grow to 4")

    wait_until(lambda: _backlog(worker) == 0, timeout=60, what="the backlog to drain")
    time.sleep(1.5)  # the last tasks finish, so every process is idle and can be retired
    assert collect_target(target=target).ok

    shrunk = service_evaluate(service=service)
    assert shrunk.result == ScalingDecision.Result.SCALED, shrunk.explanation
    assert shrunk.current_replicas == 4 and shrunk.desired_replicas == 1
    assert any("pool_shrink 3" in step for step in shrunk.explanation)
    wait_until(lambda: worker.processes() == 1, what="the pool to shrink to 1")


def test_celery_autoscale_worker_is_pinned_with_autoscale_not_pool_grow(autoscale_worker):
    done = autoscale_worker.executor.scale_to(3)
    assert done.startswith("autoscale 3")
    wait_until(lambda: autoscale_worker.processes() == 3, what="autoscale to pin 3 processes")
    # A process still starting counts as busy and is not retired; each tick re-applies, as here.
    for _ in range(15):
        assert autoscale_worker.executor.scale_to(1).startswith("autoscale 1")
        if autoscale_worker.processes() == 1:
            break
        time.sleep(1)
    assert autoscale_worker.processes() == 1


def test_celery_unknown_worker_is_an_executor_error():
    executor = executor_for(
        "celery",
        {"broker_url": settings.REDIS_URL, "worker": "nobody@nowhere", "timeout_seconds": 0.5},
        context=ExecutorContext(service="e2e"),
    )
    with pytest.raises(ExecutorError, match="did not answer"):
        executor.current()
