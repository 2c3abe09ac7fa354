"""Faults of the control plane's own services, on a whole `make run` control plane.

Redis stopped for 60 s: the web keeps serving and says Redis is down, nothing crash-loops, and
collection resumes once Redis is back.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime
from http.cookiejar import CookieJar
from pathlib import Path

import pytest
from django.conf import settings

from core.embedded import EmbeddedRedis
from tests.conftest import control_plane_env, control_plane_spawn, free_port, stop_control_plane

PASSWORD = "fault-test-password-1"
OUTAGE_SECONDS = 60

pytestmark = pytest.mark.skipif(
    not (settings.USE_EMBEDDED_POSTGRES and settings.USE_EMBEDDED_REDIS),
    reason="needs the embedded servers (DATABASE_URL/REDIS_URL are set)",
)


class Browser:
    """A signed-in urllib client (session cookie and CSRF), as a person's browser would be."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.jar = CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def get(self, path: str) -> tuple[int, str]:
        try:
            with self.opener.open(self.base + path, timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except OSError:
            return 0, ""

    def login(self, username: str, password: str) -> None:
        status, page = self.get("/login/")
        assert status == 200
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
        body = urllib.parse.urlencode({"username": username, "password": password, "csrfmiddlewaretoken": token})
        request = urllib.request.Request(
            self.base + "/login/", data=body.encode(), headers={"Referer": self.base + "/login/"}
        )
        with self.opener.open(request, timeout=10) as response:
            assert "/login/" not in response.url, "login failed"


def _wait(predicate, *, timeout: float, what: str, process: subprocess.Popen, log: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the control plane exited while waiting for {what}:\n{log.read_text()[-3000:]}"
        value = predicate()
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}:\n{log.read_text()[-3000:]}")


def _host_last_success(browser: Browser) -> datetime | None:
    status, body = browser.get("/api/v1/targets?kind=host")
    if status != 200:
        return None
    targets = json.loads(body)
    stamp = targets[0]["last_success_at"] if targets else None
    return datetime.fromisoformat(stamp) if stamp else None


def test_redis_stopped_for_a_minute_keeps_the_web_up_and_collection_resumes(tmp_path):
    web_port, redis_port = free_port(), free_port()
    var = tmp_path / "var"
    env = control_plane_env(
        var,
        web_port,
        PERFPILOT_EMBEDDED_REDIS_PORT=str(redis_port),
        PERFPILOT_HEARTBEAT_STALE_SECONDS="10",
        PERFPILOT_OPERATOR_PASSWORD=PASSWORD,
        # The outage lasts as long as this test says: the supervisor would restart Redis within seconds
        # (tests/core/test_chaos_outages.py covers that).
        PERFPILOT_EMBEDDED_RESTART="false",
    )
    log = tmp_path / "run.log"
    process = control_plane_spawn(env, log)
    browser = Browser(web_port)
    try:
        _wait(lambda: browser.get("/readyz")[0] == 200, timeout=120, what="readyz", process=process, log=log)
        browser.login("operator", PASSWORD)
        _wait(lambda: _host_last_success(browser), timeout=60, what="a first collection", process=process, log=log)

        redis_server = EmbeddedRedis(
            root=var / "redis", port=redis_port, password=(var / "secrets" / "redis_password").read_text().strip()
        )
        redis_server.stop()
        assert not redis_server.is_running()
        outage_ends = time.monotonic() + OUTAGE_SECONDS
        seen = {"healthz": [], "readyz": [], "overview": []}
        while time.monotonic() < outage_ends:
            assert process.poll() is None, log.read_text()[-3000:]
            seen["healthz"].append(browser.get("/healthz")[0])
            status, body = browser.get("/readyz")
            seen["readyz"].append((status, "redis" in body))
            status, page = browser.get("/")
            seen["overview"].append((status, 'data-component="redis"' in page and "Degraded: redis" in page))
            time.sleep(5)
        redis_server.start()

        # The web served every request of the outage, and said what was wrong.
        assert set(seen["healthz"]) == {200}, seen
        assert all(status == 503 and named for status, named in seen["readyz"]), seen
        assert all(status == 200 and shown for status, shown in seen["overview"]), seen

        # Everything recovers on its own: ready again, and the host is collected again.
        _wait(
            lambda: browser.get("/readyz")[0] == 200,
            timeout=90,
            what="readyz after the outage",
            process=process,
            log=log,
        )
        recovered_after = datetime.now().astimezone()
        _wait(
            lambda: (stamp := _host_last_success(browser)) is not None and stamp > recovered_after,
            timeout=60,
            what="a collection after the outage",
            process=process,
            log=log,
        )
    finally:
        stop_control_plane(process, env)
    output = log.read_text()
    assert process.returncode == 0, output[-3000:]
    # No process of the control plane died over it, let alone crash-looped.
    assert "restarting in" not in output and "times within" not in output, output[-3000:]
