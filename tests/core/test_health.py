from __future__ import annotations

import pytest
from django.test import override_settings

from core.embedded import EmbeddedRedis
from core.heartbeat import WORKER_KEY_PREFIX, beat_heartbeat_write, scheduler_heartbeat_write, worker_heartbeat_write
from core.redis_client import get_redis
from tests.conftest import free_port


@pytest.fixture
def no_heartbeats():
    client = get_redis()
    for key in client.scan_iter(match="perfpilot:heartbeat:*"):
        client.delete(key)
    yield
    for key in client.scan_iter(match="perfpilot:heartbeat:*"):
        client.delete(key)


def test_healthz_answers_without_login_or_dependencies(anonymous_client):
    response = anonymous_client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_is_green_with_fresh_worker_and_beat_heartbeats(anonymous_client, viewer_auth, no_heartbeats):
    worker_heartbeat_write("w1@host")
    beat_heartbeat_write()
    scheduler_heartbeat_write("host:1")
    response = anonymous_client.get("/readyz", **viewer_auth)
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == "ok" and body["failed"] == []
    assert body["checks"]["database"]["detail"].startswith("PostgreSQL ")
    assert body["checks"]["worker"]["detail"] == "1 worker online"


@pytest.mark.django_db
def test_readyz_names_a_missing_worker_beat_and_scheduler(anonymous_client, viewer_auth, no_heartbeats):
    response = anonymous_client.get("/readyz", **viewer_auth)
    assert response.status_code == 503
    assert response.json()["failed"] == ["worker", "beat", "scheduler"]
    assert response.json()["checks"]["scheduler"]["detail"] == "no scheduler heartbeat"
    assert response.json()["checks"]["worker"]["detail"] == "no worker heartbeat"


@pytest.mark.django_db
def test_anonymous_readyz_names_what_is_down_without_versions_or_errors(anonymous_client, no_heartbeats):
    response = anonymous_client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "failed": ["worker", "beat", "scheduler"],
        "checks": {
            "database": {"ok": True},
            "redis": {"ok": True},
            "worker": {"ok": False},
            "beat": {"ok": False},
            "scheduler": {"ok": False},
        },
    }
    assert "PostgreSQL" not in response.content.decode()
    wrong = anonymous_client.get("/readyz", HTTP_AUTHORIZATION="Bearer pp_not-a-token")
    assert "detail" not in wrong.content.decode()


@pytest.mark.django_db
@override_settings(HEARTBEAT_STALE_SECONDS=5.0)
def test_readyz_treats_an_old_heartbeat_as_stale(anonymous_client, viewer_auth, no_heartbeats):
    import json
    import time

    get_redis().set(
        WORKER_KEY_PREFIX + "old@host", json.dumps({"name": "old@host", "seen_at": time.time() - 60, "pid": 1})
    )
    beat_heartbeat_write()
    scheduler_heartbeat_write("host:1")
    response = anonymous_client.get("/readyz", **viewer_auth)
    assert response.status_code == 503
    assert response.json()["failed"] == ["worker"]
    assert response.json()["checks"]["worker"]["detail"] == "last worker heartbeat 60 s ago"


@pytest.mark.django_db
def test_readyz_with_redis_stopped_answers_503_naming_redis(admin_client, tmp_path):
    server = EmbeddedRedis(root=tmp_path / "redis", port=free_port(), password="pw-for-this-test")
    server.start()
    url = f"redis://:pw-for-this-test@127.0.0.1:{server.port}/0"
    with override_settings(REDIS_URL=url, HEALTH_CHECK_TIMEOUT_SECONDS=0.5):
        worker_heartbeat_write("w@h")
        beat_heartbeat_write()
        scheduler_heartbeat_write("host:1")
        assert admin_client.get("/readyz").status_code == 200
        server.stop()
        response = admin_client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert "redis" in body["failed"]
    assert body["checks"]["redis"]["ok"] is False
    assert "Connection" in body["checks"]["redis"]["detail"]
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["worker"]["detail"] == "unknown: Redis is unreachable"
    assert body["checks"]["scheduler"]["detail"] == "unknown: Redis is unreachable"


@pytest.mark.django_db
def test_status_api_reports_version_uptime_and_each_component(anonymous_client, viewer_auth, no_heartbeats):
    from core import __version__

    worker_heartbeat_write("w1@host")
    beat_heartbeat_write()
    scheduler_heartbeat_write("host:1")
    response = anonymous_client.get("/api/v1/performance/status", **viewer_auth)
    assert response.status_code == 200
    body = response.json()
    assert body["version"] == __version__
    assert body["uptime_seconds"] >= 0
    assert body["healthy"] is True
    assert set(body["components"]) == {"database", "redis", "worker", "beat", "scheduler"}
    assert all(c["ok"] and c["latency_ms"] >= 0 for c in body["components"].values())


@pytest.mark.django_db(transaction=True)
@pytest.mark.celery_worker
def test_real_worker_beat_and_scheduler_make_readyz_green(
    anonymous_client, celery_worker_process, celery_beat_process, scheduler_process
):
    response = anonymous_client.get("/readyz")
    assert response.status_code == 200, response.json()


def test_status_checks_are_reused_within_their_max_age_and_rerun_after(no_heartbeats, monkeypatch):
    from core import health

    first = health.control_plane_status(max_age_seconds=60)
    assert health.control_plane_status(max_age_seconds=60) is first
    assert health.control_plane_status() is not first  # no max age: always checked afresh
    clock = [health.time.monotonic() + 61]
    monkeypatch.setattr(health.time, "monotonic", lambda: clock[0])
    assert health.control_plane_status(max_age_seconds=60) is not first


def test_status_api_answers_from_one_set_of_checks_per_second(anonymous_client, viewer_auth, no_heartbeats):
    worker_heartbeat_write("w1@host")
    beat_heartbeat_write()
    scheduler_heartbeat_write("host:1")
    first = anonymous_client.get("/api/v1/performance/status", **viewer_auth).json()
    get_redis().delete(*get_redis().keys("perfpilot:heartbeat:*"))
    second = anonymous_client.get("/api/v1/performance/status", **viewer_auth).json()
    assert second == first and second["healthy"] is True  # the same checks, within the second


def test_a_stale_status_is_answered_at_once_while_another_thread_probes(no_heartbeats, monkeypatch):
    from core import health

    first = health.control_plane_status(max_age_seconds=60)
    clock = [health.time.monotonic() + 61]
    monkeypatch.setattr(health.time, "monotonic", lambda: clock[0])
    with health._last_status_lock:  # as if a request of another thread were probing right now
        assert health.control_plane_status(max_age_seconds=60) is first
    assert health.control_plane_status(max_age_seconds=60) is not first  # then it is refreshed
