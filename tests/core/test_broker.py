"""RabbitMQ as the broker (CELERY_BROKER_URL=amqp://…): settings, queue lengths, readiness and outages.

The broker is real: the session's RabbitMQ virtual host (tests/conftest.py), or an amqp:// URL on a
port nothing listens on for an outage. Results, heartbeats and locks stay in the session's Redis.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import uuid

import pytest
from celery import current_app
from kombu.exceptions import OperationalError

from core.broker import broker_component, broker_kind_label, broker_queue_lengths, broker_where
from core.logfilters import OutageLines
from core.outages import outage_log_reset, outage_of
from tests.conftest import ROOT

PING_TASK = "core.tasks.ping_task"


@pytest.fixture(autouse=True)
def _fresh_outage_log():
    outage_log_reset()
    yield
    outage_log_reset()


def _settings_with(env: dict[str, str]) -> dict:
    script = (
        "import json; from django.conf import settings as s; "
        "print(json.dumps({'options': s.CELERY_BROKER_TRANSPORT_OPTIONS, 'results': s.CELERY_RESULT_BACKEND, "
        "'redis': s.REDIS_URL}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings_test", **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_an_amqp_broker_gets_publisher_confirms_and_no_redis_transport_options():
    amqp = _settings_with({"CELERY_BROKER_URL": "amqp://guest:guest@127.0.0.1:5672//"})
    assert amqp["options"] == {"confirm_publish": True, "read_timeout": 5, "write_timeout": 5}
    assert amqp["results"] == amqp["redis"]  # results stay in Redis
    default = _settings_with({})
    assert "visibility_timeout" in default["options"] and "confirm_publish" not in default["options"]


def test_broker_urls_are_named_without_their_password():
    assert broker_kind_label("amqps://u:p@mq:5671/v") == "RabbitMQ"
    assert broker_kind_label("redis://:p@cache:6379/0") == "Redis"
    where = broker_where("amqp://guest:secret@mq.internal:5672/perfpilot;amqp://guest:secret@mq2:5672/perfpilot")
    assert where == "the RabbitMQ broker at mq.internal:5672"


def test_with_the_default_broker_an_outage_of_it_is_an_outage_of_redis():
    assert broker_component() == "redis"
    assert outage_of(OperationalError("Error 111 connecting")).component == "redis"


@pytest.mark.usefixtures("amqp_broker")
def test_rabbitmq_queue_lengths_count_waiting_messages_and_an_unknown_queue_as_empty():
    backlog, never_used = (f"perfpilot-test-{uuid.uuid4().hex[:8]}" for _ in range(2))
    try:
        for _ in range(3):
            current_app.send_task(PING_TASK, args=["waiting"], queue=backlog)
        assert broker_queue_lengths(queues=[backlog, never_used]) == {backlog: 3, never_used: 0}
    finally:
        with current_app.connection_for_write() as conn:
            conn.default_channel.queue_delete(backlog)


@pytest.mark.django_db
@pytest.mark.usefixtures("amqp_broker")
def test_readyz_checks_rabbitmq_as_its_own_component(anonymous_client, viewer_auth):
    body = anonymous_client.get("/readyz", **viewer_auth).json()
    assert body["checks"]["broker"]["ok"] is True, body
    assert body["checks"]["broker"]["detail"].startswith("RabbitMQ ")
    assert "broker" not in body["failed"]


@pytest.mark.django_db(transaction=True)
def test_with_rabbitmq_down_readiness_and_queueing_answer_503_naming_the_broker(
    anonymous_client, operator_auth, amqp_broker_down
):
    from django_celery_beat.models import PeriodicTask

    from core.services import schedule_sync_defaults

    port = amqp_broker_down.rsplit(":", 1)[1].split("/")[0]
    ready = anonymous_client.get("/readyz", **operator_auth)
    assert ready.status_code == 503
    assert "broker" in ready.json()["failed"]
    assert "RabbitMQ broker at 127.0.0.1:" + port in ready.json()["checks"]["broker"]["detail"]
    assert ready.json()["checks"]["redis"]["ok"] is True  # Redis is fine; only the broker is down

    schedule_sync_defaults()
    schedule = PeriodicTask.objects.get(name="Clear expired sessions")
    response = anonymous_client.post(f"/api/v1/schedules/{schedule.id}/run", **operator_auth)
    assert response.status_code == 503
    assert response.json()["component"] == "broker"
    assert response.json()["detail"].startswith(
        f"The task queue is unavailable (the RabbitMQ broker at 127.0.0.1:{port}"
    )
    assert "guest" not in response.content.decode()


def test_with_rabbitmq_as_the_broker_its_outage_has_its_own_one_line(amqp_broker_down):
    error = OperationalError("[Errno 111] Connection refused")
    assert outage_of(error).component == "broker"
    assert outage_of(error).subject == "The task broker"
    lines = OutageLines()
    retry = logging.LogRecord(
        "celery.worker.consumer.consumer",
        logging.ERROR,
        __file__,
        1,
        "consumer: Cannot connect to amqp://guest:**@127.0.0.1:5672//: [Errno 111] Connection refused.",
        None,
        None,
    )
    assert lines.filter(retry)
    assert retry.getMessage().startswith("The task broker is unavailable (consumer: Cannot connect to amqp://")
    assert not lines.filter(retry)  # once per interval


def test_the_workers_connection_lost_line_with_its_socket_error_is_the_brokers_one_line(amqp_broker_down):
    from celery.worker.consumer.consumer import CONNECTION_RETRY

    # As Celery's consumer says it when RabbitMQ goes away: the text is an argument, the error a bare reset.
    lost = logging.LogRecord(
        "celery.worker.consumer.consumer",
        logging.WARNING,
        __file__,
        1,
        "%s (%r)",
        (CONNECTION_RETRY, ConnectionResetError(104, "Connection reset by peer")),
        None,
    )
    assert OutageLines().filter(lost)
    assert lost.getMessage().startswith("The task broker is unavailable (consumer: Connection to broker lost.")
