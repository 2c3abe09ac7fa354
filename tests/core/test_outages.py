"""PostgreSQL or Redis down: every door answers 503 in its own format, and the log gets one line.

The outage is real: the test process's database connection is pointed at a port nothing listens on
(connection refused, exactly what a stopped server gives), and Redis at another one.
"""

from __future__ import annotations

import logging

import pytest
from django.db import connection
from django.test import override_settings

from core.logfilters import OutageLines
from core.outages import outage_log_reset, outage_of
from core.redis_client import get_redis
from tests.conftest import free_port, publishing_to

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _fresh_outage_log():
    outage_log_reset()
    yield
    outage_log_reset()


@pytest.fixture(autouse=True)
def _clients_as_served(request):
    """Answer as a server does: the test client would otherwise re-raise what handler500 answers."""
    for name in ("viewer_client", "anonymous_client", "admin_client"):
        if name in request.fixturenames:
            request.getfixturevalue(name).raise_request_exception = False


@pytest.fixture
def database_down():
    """The control plane's own database refuses connections until the test ends."""
    port = connection.settings_dict["PORT"]
    connection.close()
    connection.settings_dict["PORT"] = str(free_port())
    yield
    connection.close()
    connection.settings_dict["PORT"] = port


@pytest.fixture
def redis_down():
    dead = f"redis://127.0.0.1:{free_port()}/0"
    caches = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": dead}}
    # The broker is that Redis too (the default), so it is down with it.
    with override_settings(REDIS_URL=dead, CACHES=caches, HEALTH_CHECK_TIMEOUT_SECONDS=0.5), publishing_to(dead):
        get_redis.cache_clear()
        yield
    get_redis.cache_clear()


def _tracebacks(caplog) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.exc_info]


def _outage_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "perfpilot.outage"]


def test_a_page_with_a_session_while_the_database_is_down_is_the_styled_503_naming_it(
    viewer_client, database_down, caplog
):
    response = viewer_client.get("/monitoring/")
    assert response.status_code == 503
    html = response.content.decode()
    assert "The database is unavailable" in html
    assert 'class="error-code">503' in html and "/static/css/perfpilot.css" in html
    assert response["Retry-After"]
    assert _tracebacks(caplog) == []
    assert len(_outage_lines(caplog)) == 1


@pytest.mark.parametrize("path", ["/", "/optimizer/", "/scaling/", "/alerts/", "/settings/", "/monitoring/explore/"])
def test_every_page_answers_503_not_500_while_the_database_is_down(viewer_client, database_down, path):
    response = viewer_client.get(path)
    assert response.status_code == 503, path
    assert b"The database is unavailable" in response.content


def test_many_requests_in_an_outage_log_one_line_and_no_traceback(viewer_client, database_down, caplog):
    for path in ("/", "/monitoring/", "/api/v1/targets", "/metrics", "/alerts/"):
        assert viewer_client.get(path).status_code == 503
    assert _tracebacks(caplog) == []
    assert [line.split(" (")[0] for line in _outage_lines(caplog)] == ["The database is unavailable"]
    assert not [r for r in caplog.records if r.name == "django.request"]


def test_the_api_answers_503_json_naming_the_database(anonymous_client, viewer_auth, database_down):
    response = anonymous_client.get("/api/v1/targets", **viewer_auth)
    assert response.status_code == 503
    assert response.json()["component"] == "database"
    assert response.json()["detail"].startswith("The database is unavailable")


def test_the_api_with_a_session_cookie_answers_503_json(viewer_client, database_down):
    response = viewer_client.get("/api/v1/targets")
    assert response.status_code == 503
    assert response["Content-Type"] == "application/json"


def test_metrics_answers_503_in_plain_text(anonymous_client, viewer_auth, database_down):
    response = anonymous_client.get("/metrics", **viewer_auth)
    assert response.status_code == 503
    assert response["Content-Type"].startswith("text/plain")
    assert response.content.decode().startswith("The database is unavailable")


def test_an_htmx_fragment_request_gets_a_notice_for_the_page_slot(viewer_client, database_down):
    response = viewer_client.get("/?fragment=health", HTTP_HX_REQUEST="true")
    assert response.status_code == 503
    assert response["HX-Retarget"] == "#outage-notice"
    html = response.content.decode()
    assert 'class="outage-notice" data-component="database"' in html
    assert "<nav" not in html and "<html" not in html


def test_the_notice_slot_is_on_every_page(viewer_client):
    assert b'id="outage-notice"' in viewer_client.get("/").content


def test_the_login_page_and_static_files_still_answer_while_the_database_is_down(anonymous_client, database_down):
    assert anonymous_client.get("/login/").status_code == 200
    assert anonymous_client.get("/static/css/perfpilot.css").status_code == 200
    assert anonymous_client.get("/healthz").status_code == 200


def test_signing_in_while_the_database_is_down_is_a_503(anonymous_client, database_down):
    response = anonymous_client.post("/login/", {"username": "someone", "password": "whatever-it-is"})
    assert response.status_code == 503
    assert b"The database is unavailable" in response.content


def test_readyz_still_answers_and_names_the_database_without_a_log_line_per_poll(
    anonymous_client, database_down, caplog
):
    response = anonymous_client.get("/readyz")
    assert response.status_code == 503
    assert "database" in response.json()["failed"]
    assert not [r for r in caplog.records if r.name == "django.request"]


def test_pages_answer_normally_as_soon_as_the_database_is_back(viewer_client, caplog):
    port = connection.settings_dict["PORT"]
    connection.close()
    connection.settings_dict["PORT"] = str(free_port())
    try:
        assert viewer_client.get("/monitoring/").status_code == 503
    finally:
        connection.close()
        connection.settings_dict["PORT"] = port
    assert viewer_client.get("/monitoring/").status_code == 200


def test_redis_down_leaves_pages_that_can_do_without_it_working_and_logs_one_line(viewer_client, redis_down, caplog):
    # Pages read queue lengths and health from Redis but show "unknown" without it: 200, not 503.
    for path in ("/", "/optimizer/", "/alerts/"):
        assert viewer_client.get(path).status_code == 200, path
    assert _tracebacks(caplog) == []
    assert [line.split(" (")[0] for line in _outage_lines(caplog)] == ["Redis is unavailable"]


def test_a_lock_that_needs_redis_while_it_is_down_is_a_503_naming_redis(rf, redis_down):
    from core.locks import lock_holder
    from core.outages import outage_answer

    request = rf.get("/monitoring/")
    try:
        lock_holder("perfpilot:lock:anything")
    except Exception as exc:
        response = outage_answer(request, exc)
    else:
        pytest.fail("reading a lock from a stopped Redis did not fail")
    assert response.status_code == 503 and b"Redis is unavailable" in response.content


def test_other_errors_are_not_outages():
    # Only outages become 503s: a real bug keeps its 500 and its traceback.
    assert outage_of(ZeroDivisionError("bug")) is None
    assert outage_of(ValueError("bad")) is None


def _record_with(exc: BaseException, message: str = "Task x raised") -> logging.LogRecord:
    return logging.LogRecord("celery.app.trace", logging.ERROR, __file__, 1, message, None, (type(exc), exc, None))


def test_the_log_filter_turns_outage_tracebacks_into_one_line_per_interval():
    from django.db import OperationalError
    from redis.exceptions import ConnectionError as RedisConnectionError

    lines = OutageLines()
    first = _record_with(OperationalError("connection refused\nIs the server running?"))
    assert lines.filter(first)
    assert first.exc_info is None and first.levelno == logging.WARNING
    assert first.getMessage().startswith("The database is unavailable (OperationalError: connection refused)")
    assert "while: Task x raised" in first.getMessage()
    assert not lines.filter(_record_with(OperationalError("connection refused")))
    # Redis is its own component, with its own line.
    redis_record = _record_with(RedisConnectionError("Error 111 connecting"))
    assert lines.filter(redis_record) and redis_record.getMessage().startswith("Redis is unavailable")
    # Any other error keeps its traceback.
    bug = _record_with(ZeroDivisionError("division by zero"))
    assert lines.filter(bug) and bug.exc_info is not None


def test_an_outage_raised_from_another_error_is_still_recognised():
    from kombu.exceptions import OperationalError as BrokerOperationalError

    try:
        try:
            raise ConnectionRefusedError(111, "Connection refused")
        except ConnectionRefusedError as exc:
            raise BrokerOperationalError("Error 111 connecting to 127.0.0.1:6379") from exc
    except BrokerOperationalError as exc:
        outer = RuntimeError("queueing failed")
        outer.__cause__ = exc
        assert outage_of(outer).component == "redis"
