"""The Celery collector against the session's real broker and worker, and a broker nobody consumes."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from django.conf import settings

from config.celery import app as project_app
from core.embedded import EmbeddedRedis
from core.registry import registry
from monitoring.collectors.base import COUNTER, CollectorError
from monitoring.collectors.celery import CeleryCollector, quantile
from monitoring.models import CollectorState, Target
from monitoring.services.collection import collect_target
from tests.conftest import free_port
from tests.monitoring.conftest import measurements_by_metric, stored_samples

PING_TASK = "core.tasks.ping_task"


def _target(url: str, *, options: dict | None = None, timeout: int = 2, name: str = "celery-under-test") -> Target:
    target = Target(name=name, kind="celery", timeout_seconds=timeout, options=options or {})
    target.url = url
    return target


@pytest.fixture
def backlog_queue():
    """A queue that no worker consumes; deleted (with its priority lists) afterwards."""
    name = f"perfpilot-test-backlog-{uuid.uuid4().hex[:8]}"
    yield name
    with project_app.connection_for_write() as conn:
        conn.default_channel.queue_delete(name)


@pytest.fixture
def idle_broker(tmp_path):
    """A Redis with no Celery worker attached."""
    server = EmbeddedRedis(root=tmp_path / "broker", port=free_port(), password="pw-idle-broker")
    server.start()
    yield f"redis://:pw-idle-broker@127.0.0.1:{server.port}/0"
    server.stop()


def test_celery_is_registered_under_its_kind():
    assert registry.get("collectors", "celery") is CeleryCollector


def test_quantiles_interpolate_between_closest_ranks():
    values = [float(v) for v in range(1, 101)]
    assert quantile(values, 0.5) == pytest.approx(50.5)
    assert quantile(values, 0.99) == pytest.approx(99.01)
    assert quantile([3.0], 0.95) == 3.0


@pytest.mark.celery_worker
def test_a_backlog_in_a_queue_no_worker_consumes_is_counted_with_its_priorities(celery_worker_process, backlog_queue):
    for _ in range(3):
        project_app.send_task(PING_TASK, args=["waiting"], queue=backlog_queue)
    for priority in (4, 9):  # kombu keeps these in the queue's extra priority lists
        project_app.send_task(PING_TASK, args=["urgent"], queue=backlog_queue, priority=priority)
    queues = [*settings.TASK_QUEUES, backlog_queue]
    result = CeleryCollector(_target(settings.CELERY_BROKER_URL, options={"queues": queues})).collect()
    lengths = {m.labels["queue"]: m.value for m in measurements_by_metric(result)["celery_queue_length"]}
    assert set(lengths) == set(queues)
    assert lengths[backlog_queue] == 5


@pytest.mark.celery_worker
def test_workers_online_and_tasks_in_flight_come_from_the_real_worker(celery_worker_process):
    options = {"queues": list(settings.TASK_QUEUES)}
    found = measurements_by_metric(CeleryCollector(_target(settings.CELERY_BROKER_URL, options=options)).collect())
    assert found["celery_workers_online"][0].value >= 1
    assert found["celery_tasks_active"][0].value >= 0
    assert found["celery_tasks_reserved"][0].value >= 0
    processed = found["celery_worker_tasks_processed_per_second"]
    assert any(m.labels["worker"].startswith("pytest-") for m in processed)
    assert all(m.kind == COUNTER for m in processed)


@pytest.mark.celery_worker
def test_task_events_in_the_window_become_rates_and_runtime_percentiles(celery_worker_process):
    stop = threading.Event()

    def keep_the_worker_busy() -> None:
        while not stop.is_set():
            project_app.send_task(PING_TASK, args=["busy"], queue="default")
            project_app.send_task(PING_TASK, args=[], queue="default")  # TypeError in the worker: fails
            time.sleep(0.05)

    sender = threading.Thread(target=keep_the_worker_busy, daemon=True)
    sender.start()
    target = _target(settings.CELERY_BROKER_URL, options={"event_window_seconds": 1.5}, timeout=3)
    try:
        # Rates are sampled over the window, so one window may miss the rarer event; a few
        # bounded windows must see both kinds.
        for _attempt in range(4):
            result = CeleryCollector(target).collect()
            found = measurements_by_metric(result)
            if (
                found["celery_tasks_succeeded_per_second"][0].value > 0
                and found["celery_tasks_failed_per_second"][0].value > 0
            ):
                break
    finally:
        stop.set()
        sender.join(5)
    assert found["celery_tasks_succeeded_per_second"][0].value > 0
    assert found["celery_tasks_failed_per_second"][0].value > 0
    assert found["celery_tasks_retried_per_second"][0].value >= 0
    runtimes = {m.labels["quantile"]: m.value for m in found["celery_task_runtime_seconds"]}
    assert set(runtimes) == {"0.5", "0.95", "0.99"}
    assert 0 <= runtimes["0.5"] <= runtimes["0.95"] <= runtimes["0.99"] < 5
    assert any("1.5 s window" in note for note in result.notes)


@pytest.mark.celery_worker
def test_connection_describes_the_broker_and_the_workers(celery_worker_process):
    description = CeleryCollector(_target(settings.CELERY_BROKER_URL, options={"app": "config"})).test_connection()
    assert description.startswith("Celery app config: broker Redis ")
    assert "online" in description and "0 workers" not in description


def test_no_workers_is_reported_as_zero_not_as_a_failure(idle_broker):
    started = time.monotonic()
    result = CeleryCollector(_target(idle_broker)).collect()
    found = measurements_by_metric(result)
    assert found["celery_workers_online"][0].value == 0
    assert [(m.labels, m.value) for m in found["celery_queue_length"]] == [({"queue": "celery"}, 0)]
    assert "No Celery worker answered." in result.notes
    assert "celery_tasks_succeeded_per_second" not in found  # no window is listened to without workers
    assert time.monotonic() - started < 2  # the ping's reply timeout, nothing more


def test_a_closed_broker_port_is_a_readable_error_without_the_password():
    url = f"redis://:s3cret-pw@127.0.0.1:{free_port()}/0"
    with pytest.raises(CollectorError) as caught:
        CeleryCollector(_target(url)).collect()
    message = str(caught.value)
    assert message.startswith("The Celery broker at") and "could not be reached" in message
    assert "s3cret-pw" not in message


def test_invalid_options_are_explained():
    with pytest.raises(CollectorError, match='"queues" must be a list'):
        CeleryCollector(_target("redis://127.0.0.1:1/0", options={"queues": "celery"})).collect()
    with pytest.raises(CollectorError, match='"event_window_seconds"'):
        CeleryCollector(_target("redis://127.0.0.1:1/0", options={"event_window_seconds": 30})).collect()


@pytest.mark.celery_worker
@pytest.mark.usefixtures("clean_samples")
def test_collect_target_stores_rates_from_the_second_collection_and_none_after_a_reset(celery_worker_process):
    target = _target(settings.CELERY_BROKER_URL, options={"queues": list(settings.TASK_QUEUES)}, name="celery-rates")
    target.save()
    metric = "celery_worker_tasks_processed_per_second"
    collect_target(target=target)
    assert stored_samples(target.id, metric) == []
    assert stored_samples(target.id, "celery_queue_length")
    project_app.send_task(PING_TASK, args=["counted"], queue="default").get(timeout=30)
    collect_target(target=target)
    rates = stored_samples(target.id, metric)
    assert rates and all(kind == "rate" and value > 0 for kind, _, value in rates)

    # As if the worker restarted: the stored totals are now larger than what it reports.
    state = CollectorState.objects.get(target=target)
    state.counters["series"] = {key: value + 1e9 for key, value in state.counters["series"].items()}
    state.save()
    collect_target(target=target)
    assert len(stored_samples(target.id, metric)) == len(rates)  # no rate across the reset, no negative one


def test_the_broker_connection_is_kept_between_collections(idle_broker):
    from monitoring.collectors import celery as celery_collector

    target = _target(idle_broker, name="kept-connection")
    fingerprint = (target.url, "celery", float(target.timeout_seconds))
    CeleryCollector(target).collect()
    kept = celery_collector._kept.take(target.pk, fingerprint)
    assert kept is not None
    celery_collector._kept.put_back(target.pk, fingerprint, kept)
    CeleryCollector(target).collect()
    again = celery_collector._kept.take(target.pk, fingerprint)
    assert again is kept  # the same app and connection served the second collection
    celery_collector._kept.discard(again)


def test_a_broker_restart_costs_no_collection_and_a_stopped_broker_is_an_error(tmp_path):
    server = EmbeddedRedis(root=tmp_path / "broker", port=free_port(), password="pw-restarted")
    server.start()
    url = f"redis://:pw-restarted@127.0.0.1:{server.port}/0"
    target = _target(url, name="restarted-broker")
    try:
        assert measurements_by_metric(CeleryCollector(target).collect())["celery_workers_online"][0].value == 0
        server.stop()
        server.start()  # the kept connection is stale now: the collection retries on a new one
        assert measurements_by_metric(CeleryCollector(target).collect())["celery_workers_online"][0].value == 0
        server.stop()
        with pytest.raises(CollectorError) as caught:
            CeleryCollector(target).collect()
        assert "pw-restarted" not in str(caught.value)
    finally:
        server.stop()


# --- RabbitMQ as the broker -------------------------------------------------------------------


@pytest.mark.celery_worker
def test_on_rabbitmq_queue_lengths_workers_and_task_rates_are_reported(celery_worker_process_amqp, rabbitmq_url):
    from celery import Celery

    backlog, never_used = (f"perfpilot-test-backlog-{uuid.uuid4().hex[:8]}" for _ in range(2))
    sender = Celery("sender", broker=rabbitmq_url, fixups=[], set_as_current=False)
    try:
        for _ in range(3):
            sender.send_task(PING_TASK, args=["waiting"], queue=backlog)
        queues = [*settings.TASK_QUEUES, backlog, never_used]
        collector = CeleryCollector(_target(rabbitmq_url, options={"queues": queues}))
        found = measurements_by_metric(collector.collect())
        lengths = {m.labels["queue"]: m.value for m in found["celery_queue_length"]}
        assert set(lengths) == set(queues)
        assert (lengths[backlog], lengths[never_used]) == (3, 0)
        assert found["celery_workers_online"][0].value >= 1
        assert any(
            m.labels["worker"].startswith("pytest-amqp-") for m in found["celery_worker_tasks_processed_per_second"]
        )
        assert "celery_tasks_succeeded_per_second" in found  # the event window works on RabbitMQ too
        description = collector.test_connection()
        assert description.startswith("Celery app celery: broker RabbitMQ ") and "0 workers" not in description
    finally:
        with sender.connection_for_write() as conn:
            conn.default_channel.queue_delete(backlog)
        sender.close()


def test_a_closed_rabbitmq_port_is_a_readable_error_without_the_password():
    url = f"amqp://perfpilot:s3cret-pw@127.0.0.1:{free_port()}/vhost"
    started = time.monotonic()
    with pytest.raises(CollectorError) as caught:
        CeleryCollector(_target(url)).collect()
    message = str(caught.value)
    assert message.startswith("The Celery broker at") and "Connection refused" in message
    assert "s3cret-pw" not in message
    assert time.monotonic() - started < 5  # the timeout bounds it, no retrying for ever


def test_a_rabbitmq_target_is_refused_where_the_outbound_policy_refuses_its_host():
    with pytest.raises(CollectorError, match="is refused"):
        CeleryCollector(_target("amqp://guest:guest@169.254.169.254:5672//")).collect()
