"""The Docker executor against a local fake Engine API (Swarm service inspect and update)."""

from __future__ import annotations

import pytest

from core.errors import InvalidInput
from scaling.executors.base import ExecutorContext, ExecutorError, executor_class, executor_for
from tests.scaling.servers import FakeDockerEngine, serving


@pytest.fixture
def engine():
    fake = FakeDockerEngine()
    fake.add("web", 2)
    fake.add("agent", None)
    with serving(fake) as url:
        fake.url = url
        yield fake


def _executor(engine, service: str):
    config = executor_class("docker").validate_config({"base_url": engine.url, "service": service})
    return executor_for("docker", config, context=ExecutorContext(service="web"))


def test_docker_reads_and_scales_a_swarm_service(engine):
    executor = _executor(engine, "web")
    assert executor.current() == 2
    assert executor.scale_to(5) == "docker service web scaled 2 → 5"
    (update,) = engine.updates
    assert update["Mode"] == {"Replicated": {"Replicas": 5}}  # as the Engine decodes it
    assert update["TaskTemplate"]["ContainerSpec"]["Image"] == "busybox:1"  # the rest of the spec is kept
    assert executor.current() == 5


def test_docker_unknown_or_global_service_is_an_executor_error(engine):
    with pytest.raises(ExecutorError, match="no service 'ghost'"):
        _executor(engine, "ghost").current()
    with pytest.raises(ExecutorError, match="global services cannot be scaled"):
        _executor(engine, "agent").scale_to(3)


def test_docker_unreachable_engine_and_bad_address():
    config = {"base_url": "tcp://127.0.0.1:9", "service": "web", "timeout_seconds": 1}
    executor = executor_for("docker", executor_class("docker").validate_config(config), context=ExecutorContext("w"))
    with pytest.raises(ExecutorError, match="Cannot"):
        executor.current()
    with pytest.raises(InvalidInput) as refused:
        executor_class("docker").validate_config({"base_url": "ftp://x", "service": "web"})
    assert refused.value.field == "executor_config.base_url"
