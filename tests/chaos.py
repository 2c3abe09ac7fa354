"""Chaos support: a real `make run` control plane, outages of its servers, and load on its doors.

Used by tests/core/test_chaos_outages.py and by the `faults_outage` benchmark.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from http.cookiejar import CookieJar
from pathlib import Path

import psutil

from core.embedded import EmbeddedPostgres, EmbeddedRedis
from tests.conftest import control_plane_env, control_plane_spawn, free_port, stop_control_plane

PASSWORD = "chaos-test-password-1"


# What the load asks for: (path, HTMX request?). Pages, a fragment, the API, /metrics.
LOAD = [
    ("/", False),
    ("/monitoring/", False),
    ("/optimizer/", False),
    ("/alerts/", False),
    ("/?fragment=health", True),
    ("/api/v1/targets", False),
    ("/api/v1/performance/status", False),
    ("/metrics", False),
]


class Browser:
    """A signed-in urllib client (session cookie and CSRF), as a person's browser would be."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.jar = CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def request(self, path: str, *, htmx: bool = False, timeout: float = 10) -> tuple[int, dict, str]:
        """Status, headers and body of a GET; status 0 (and the error as the body) when nothing answered."""
        headers = {"HX-Request": "true"} if htmx else {}
        request = urllib.request.Request(self.base + path, headers=headers)
        try:
            with self.opener.open(request, timeout=timeout) as response:
                return response.status, dict(response.headers), response.read().decode(errors="replace")
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read().decode(errors="replace")
        except OSError as exc:
            return 0, {}, repr(exc)

    def get(self, path: str) -> tuple[int, str]:
        status, _, body = self.request(path)
        return status, body if status else ""

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


def host_last_success(browser: Browser) -> datetime | None:
    status, body = browser.get("/api/v1/targets?kind=host")
    if status != 200:
        return None
    targets = json.loads(body)
    stamp = targets[0]["last_success_at"] if targets else None
    return datetime.fromisoformat(stamp) if stamp else None


@dataclass
class ControlPlane:
    process: subprocess.Popen
    env: dict[str, str]
    log: Path
    web_port: int
    var: Path
    browser: Browser = field(init=False)

    def __post_init__(self) -> None:
        self.browser = Browser(self.web_port)

    def output(self, since: int = 0) -> str:
        return self.log.read_text(errors="replace")[since:]

    def log_size(self) -> int:
        return len(self.log.read_text(errors="replace"))

    def wait(self, predicate, *, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"the control plane exited waiting for {what}:\n{self.output()[-3000:]}"
            value = predicate()
            if value:
                return value
            time.sleep(0.5)
        raise AssertionError(f"timed out waiting for {what}:\n{self.output()[-4000:]}")

    def ready(self) -> bool:
        return self.browser.get("/readyz")[0] == 200

    def postgres(self) -> EmbeddedPostgres:
        password = (self.var / "secrets" / "postgres_password").read_text().strip()
        port = int(self.env["PERFPILOT_EMBEDDED_PG_PORT"])
        return EmbeddedPostgres(
            root=self.var / "postgres", port=port, user="perfpilot", password=password, database="perfpilot"
        )

    def redis(self) -> EmbeddedRedis:
        password = (self.var / "secrets" / "redis_password").read_text().strip()
        return EmbeddedRedis(
            root=self.var / "redis", port=int(self.env["PERFPILOT_EMBEDDED_REDIS_PORT"]), password=password
        )

    def redis_url(self) -> str:
        password = (self.var / "secrets" / "redis_password").read_text().strip()
        return f"redis://:{password}@127.0.0.1:{self.env['PERFPILOT_EMBEDDED_REDIS_PORT']}/0"

    def worker_pids(self) -> set[int]:
        """The worker's main process (not its pool children, which a worker may replace)."""
        pids = set()
        for child in psutil.Process(self.process.pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                cmdline = child.cmdline()
                if "celery" in cmdline and "worker" in cmdline and "celery" not in child.parent().cmdline():
                    pids.add(child.pid)
        return pids


def control_plane_start(var: Path, log: Path, *, timeout: float = 150) -> ControlPlane:
    """`manage.py run_control_plane` on its own data dir and free ports, ready and signed in."""
    web_port = free_port()
    env = control_plane_env(var, web_port, PERFPILOT_HEARTBEAT_STALE_SECONDS="10", PERFPILOT_OPERATOR_PASSWORD=PASSWORD)
    process = control_plane_spawn(env, log)
    plane = ControlPlane(process, env, log, web_port, var)
    try:
        plane.wait(plane.ready, timeout=timeout, what="readyz")
        plane.browser.login("operator", PASSWORD)
    except BaseException:
        stop_control_plane(process, env)
        raise
    return plane


def control_plane_stop(plane: ControlPlane) -> None:
    stop_control_plane(plane.process, plane.env)


@contextlib.contextmanager
def port_held(port: int) -> Iterator[None]:
    """Hold 127.0.0.1:port with a listener that hangs up on every connection."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(64)
    listener.settimeout(0.2)
    stop = threading.Event()

    def hang_up():
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            connection.close()

    thread = threading.Thread(target=hang_up, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)
        listener.close()


@contextlib.contextmanager
def server_down(server, port: int) -> Iterator[None]:
    """Stop an embedded server and keep it down (its port held) until the block ends."""
    for _ in range(20):
        server.stop()
        try:
            held = port_held(port)
            held.__enter__()
        except OSError:  # the supervisor started it again in between: stop it again
            time.sleep(0.2)
            continue
        try:
            yield
        finally:
            held.__exit__(None, None, None)
        return
    raise AssertionError(f"could not keep port {port} down")


def answer_is_a_proper_503(path: str, htmx: bool, headers: dict, body: str) -> bool:
    content_type = headers.get("Content-Type", "")
    if path.startswith("/api/"):
        return content_type == "application/json" and json.loads(body)["component"] in ("database", "redis")
    if path == "/metrics":
        return content_type.startswith("text/plain") and "is unavailable" in body
    if htmx:
        return headers.get("HX-Retarget") == "#outage-notice" and 'class="outage-notice"' in body
    return 'class="error-code">503' in body and "is unavailable" in body


def load(browser: Browser, stop: threading.Event, answers: list) -> None:
    while not stop.is_set():
        for path, htmx in LOAD:
            status, headers, body = browser.request(path, htmx=htmx, timeout=15)
            answers.append((time.monotonic(), path, htmx, status, headers, body))


def all_normal(browser: Browser) -> bool:
    return all(browser.request(path, htmx=htmx, timeout=15)[0] == 200 for path, htmx in LOAD)


def pid_of(pidfile: Path) -> int:
    return int(pidfile.read_text().splitlines()[0])
