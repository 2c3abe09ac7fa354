from __future__ import annotations

import contextlib
import os
import socket
import time
from datetime import timedelta

import pytest
from celery.contrib.django.task import DjangoTask
from celery.result import AsyncResult
from celery.utils import uuid
from django.conf import settings
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.db import transaction
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from config.celery import app
from core.tasks import ping_task

pytestmark = [pytest.mark.celery_worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture(params=["redis", "rabbitmq"])
def broker_worker(request) -> str:
    """Each broker Perfpilot supports, with a real worker taking tasks from it; the node name prefix
    of that worker. Results come back through Redis either way."""
    if request.param == "redis":
        request.getfixturevalue("celery_worker_process")
        return f"pytest-{os.getpid()}@"
    request.getfixturevalue("celery_worker_process_amqp")
    request.getfixturevalue("amqp_broker")  # this process publishes to RabbitMQ for the test
    return f"pytest-amqp-{os.getpid()}@"


def test_task_round_trip_through_broker_and_a_real_worker(broker_worker):
    result = ping_task.delay("hello")
    answer = result.get(timeout=30)
    assert answer["worker"].startswith(broker_worker)  # the worker of that broker took it
    assert answer == {"payload": "hello", "worker_host": socket.gethostname(), "worker": answer["worker"]}
    assert result.successful()


def test_every_queue_is_consumed_by_the_worker(broker_worker):
    results = [ping_task.apply_async(args=[queue], queue=queue) for queue in settings.TASK_QUEUES]
    answers = [r.get(timeout=30) for r in results]
    assert [a["payload"] for a in answers] == list(settings.TASK_QUEUES)
    assert all(a["worker"].startswith(broker_worker) for a in answers)


def test_every_task_of_ours_can_be_sent_on_commit():
    """Celery's Django fixup gives our app DjangoTask, whose delay_on_commit the services use."""
    ours = [task for name, task in app.tasks.items() if not name.startswith("celery.")]
    assert ours
    assert all(isinstance(task, DjangoTask) for task in ours)


def test_a_task_sent_on_commit_is_sent_only_when_the_transaction_commits(broker_worker):
    rolled_back, committed = uuid(), uuid()
    with contextlib.suppress(RuntimeError), transaction.atomic():
        ping_task.apply_async_on_commit(args=["rolled back"], task_id=rolled_back)
        raise RuntimeError("roll back")
    with transaction.atomic():
        ping_task.apply_async_on_commit(args=["committed"], task_id=committed)
    assert AsyncResult(committed).get(timeout=30)["payload"] == "committed"
    assert AsyncResult(rolled_back).state == "PENDING"  # never sent, so never started


def test_each_queue_has_its_own_exchange_and_routing_key():
    """Otherwise a message routed to one queue would be copied into every queue bound alike."""
    queues = settings.CELERY_TASK_QUEUES
    assert {q.name for q in queues} == set(settings.TASK_QUEUES)
    assert len({(q.exchange.name, q.routing_key) for q in queues}) == len(queues)


def test_run_now_executes_the_scheduled_task_on_the_worker(anonymous_client, operator_auth, celery_worker_process):
    from core.services import schedule_sync_defaults

    schedule_sync_defaults()
    expired = SessionStore()
    expired.create()
    Session.objects.filter(session_key=expired.session_key).update(expire_date=timezone.now() - timedelta(days=1))
    schedule = PeriodicTask.objects.get(name="Clear expired sessions")
    response = anonymous_client.post(f"/api/v1/schedules/{schedule.id}/run", **operator_auth)
    assert response.status_code == 202
    deadline = time.monotonic() + 30
    while Session.objects.filter(session_key=expired.session_key).exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not Session.objects.filter(session_key=expired.session_key).exists()
