"""The webhook executor against a local server: success, a 500 and a timeout."""

from __future__ import annotations

import pytest

from core.errors import InvalidInput
from scaling.executors.base import ExecutorContext, ExecutorError, executor_class, executor_for

CONTEXT = ExecutorContext(service="web", applied_replicas=2, min_replicas=1)


def _executor(config: dict, context: ExecutorContext = CONTEXT):
    return executor_for("webhook", executor_class("webhook").validate_config(config), context=context)


def test_webhook_posts_the_desired_count_as_json_and_accepts_a_2xx(hook):
    executor = _executor({"url": f"{hook.url}/scale", "headers": {"Authorization": "Bearer s3cret"}})
    assert "200" in executor.scale_to(5)
    (post,) = hook.posts
    assert post["path"] == "/scale"
    assert post["json"] == {"service": "web", "replicas": 5, "previous": 2}
    assert post["headers"]["Authorization"] == "Bearer s3cret"
    assert post["headers"]["Content-Type"] == "application/json"


def test_webhook_500_is_an_executor_error_with_the_status(hook):
    hook.status = 500
    with pytest.raises(ExecutorError, match="answered 500"):
        _executor({"url": hook.url}).scale_to(3)


def test_webhook_timeout_is_an_executor_error(hook):
    hook.delay = 1.5
    with pytest.raises(ExecutorError, match=r"did not answer within 0.3 s"):
        _executor({"url": hook.url, "timeout_seconds": 0.3}).scale_to(3)


def test_webhook_unreachable_is_an_executor_error():
    with pytest.raises(ExecutorError, match="cannot be reached"):
        _executor({"url": "http://127.0.0.1:9/"}).scale_to(3)


def test_webhook_current_reads_the_status_url(hook):
    hook.replicas = 7
    assert _executor({"url": hook.url, "status_url": f"{hook.url}/status"}).current() == 7


def test_webhook_current_without_a_status_url_is_the_applied_count():
    assert _executor({"url": "http://127.0.0.1:9/"}).current() == 2
    fresh = ExecutorContext(service="web", applied_replicas=None, min_replicas=3)
    assert _executor({"url": "http://127.0.0.1:9/"}, fresh).current() == 3


def test_webhook_config_rejects_other_schemes_and_unknown_settings():
    with pytest.raises(InvalidInput) as bad_scheme:
        executor_class("webhook").validate_config({"url": "file:///etc/passwd"})
    assert bad_scheme.value.field == "executor_config.url"
    with pytest.raises(InvalidInput) as unknown:
        executor_class("webhook").validate_config({"url": "http://x", "verb": "PUT"})
    assert unknown.value.field == "executor_config.verb"
