"""The Kubernetes executor against a local fake API server (scale subresource)."""

from __future__ import annotations

import pytest

from scaling.executors.base import ExecutorContext, ExecutorError, executor_class, executor_for
from tests.scaling.servers import FakeKubernetes, serving

CONTEXT = ExecutorContext(service="api")


@pytest.fixture
def cluster():
    fake = FakeKubernetes(token="k8s-token")
    fake.objects[("prod", "deployments", "api")] = 3
    fake.objects[("prod", "statefulsets", "db")] = 2
    with serving(fake) as url:
        fake.url = url
        yield fake


def _executor(cluster, **overrides):
    config = {"api_url": cluster.url, "token": "k8s-token", "namespace": "prod", "name": "api", **overrides}
    return executor_for("kubernetes", executor_class("kubernetes").validate_config(config), context=CONTEXT)


def test_kubernetes_reads_and_patches_a_deployment_scale(cluster):
    executor = _executor(cluster)
    assert executor.current() == 3
    assert "set to 6" in executor.scale_to(6)
    assert cluster.objects[("prod", "deployments", "api")] == 6
    assert executor.current() == 6
    (patch,) = cluster.patches
    assert patch["body"] == {"spec": {"replicas": 6}}
    assert "patch" in patch["content_type"]


def test_kubernetes_scales_a_statefulset(cluster):
    executor = _executor(cluster, resource="statefulset", name="db")
    executor.scale_to(4)
    assert cluster.objects[("prod", "statefulsets", "db")] == 4


def test_kubernetes_not_found_and_unauthorized_are_executor_errors(cluster):
    with pytest.raises(ExecutorError, match="answered 404"):
        _executor(cluster, name="missing").current()
    with pytest.raises(ExecutorError, match="answered 401"):
        _executor(cluster, token="wrong").scale_to(2)
    assert cluster.objects[("prod", "deployments", "api")] == 3


def test_kubernetes_unreachable_api_server_is_an_executor_error():
    config = {"api_url": "http://127.0.0.1:9", "name": "api", "timeout_seconds": 1}
    executor = executor_for("kubernetes", executor_class("kubernetes").validate_config(config), context=CONTEXT)
    with pytest.raises(ExecutorError, match="Cannot reach the API server"):
        executor.current()
