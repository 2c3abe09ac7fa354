"""A small process supervisor for `make run`: web, worker, beat and the scheduler as child processes.

Children run in their own sessions, so Ctrl-C reaches only this supervisor; it then stops them
in order (SIGTERM, then SIGKILL after a grace period). A child that dies is restarted with a
growing delay; one that keeps crashing stops the whole control plane with a clear message.

The embedded PostgreSQL and Redis are watched too (`servers`): one that dies or is stopped is
started again, with a growing delay between failed attempts, and every attempt is one line. They
are never given up on: while one is down the web answers 503 naming it, which beats stopping.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO

from django.conf import settings

logger = logging.getLogger(__name__)

CRASH_WINDOW_SECONDS = 60
MAX_CRASHES_IN_WINDOW = 5
STOP_GRACE_SECONDS = 20
SERVER_CHECK_SECONDS = 2.0
SERVER_MAX_DELAY_SECONDS = 30.0


def gunicorn_command(*, bind: str) -> list[str]:
    """The web process's command line: `make run` starts it, and the benchmarks start exactly the same."""
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "config.wsgi:application",
        "--bind",
        bind,
        "--workers",
        str(settings.WEB_WORKERS),
        "--threads",
        str(settings.WEB_THREADS),
        "--worker-connections",
        str(settings.WEB_CONNECTIONS),
        "--worker-class",
        "gthread",
        "--config",
        "python:config.gunicorn",
        "--access-logfile",
        "-",
        "--graceful-timeout",
        "10",
        "--no-control-socket",
    ]


def stop_process_group(process: subprocess.Popen, *, grace_seconds: float = STOP_GRACE_SECONDS) -> bool:
    """Stop a child started in its own session, with everything it started: SIGTERM to its process
    group, then SIGKILL if it is still running after the grace period. False when it had to be killed."""
    if process.poll() is not None:
        return True
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:  # it ended meanwhile
        return True
    try:
        process.wait(grace_seconds)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        return False
    return True


@dataclass
class ChildSpec:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class Child:
    spec: ChildSpec
    process: subprocess.Popen | None = None
    crashes: list[float] = field(default_factory=list)
    restart_at: float | None = None


@dataclass
class ServerSpec:
    """A server the supervisor keeps running but did not start as a child (it daemonizes)."""

    name: str
    is_running: Callable[[], bool]
    start: Callable[[], object]


@dataclass
class WatchedServer:
    spec: ServerSpec
    failures: int = 0
    retry_at: float = 0.0
    down_since: float | None = None


class Supervisor:
    def __init__(self, specs: list[ChildSpec], *, servers: list[ServerSpec] = (), out: IO[str] = sys.stdout) -> None:
        self.children = [Child(spec) for spec in specs]
        self.servers = [WatchedServer(spec) for spec in servers]
        self.out = out
        self.stopping = threading.Event()
        self.failure: str | None = None
        self._out_lock = threading.Lock()
        self._width = max(len(name) for name in [*(spec.name for spec in specs), "supervisor"])

    def say(self, name: str, line: str) -> None:
        with self._out_lock:
            self.out.write(f"{name:<{self._width}} | {line}\n")
            self.out.flush()

    def _pump(self, name: str, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            self.say(name, raw.decode(errors="replace").rstrip())
        stream.close()

    def _spawn(self, child: Child) -> None:
        env = {**os.environ, **child.spec.env}
        process = subprocess.Popen(
            child.spec.argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        child.process = process
        child.restart_at = None
        threading.Thread(target=self._pump, args=(child.spec.name, process.stdout), daemon=True).start()
        self.say("supervisor", f"started {child.spec.name} (pid {process.pid})")

    def request_stop(self, signum: int | None = None, frame=None) -> None:
        if not self.stopping.is_set():
            self.say("supervisor", "stopping…")
        self.stopping.set()

    def run(self, *, on_started: Callable[[], None] | None = None, handle_signals: bool = True) -> int:
        """Start the children and watch them until asked to stop. Returns an exit code."""
        if handle_signals:  # only possible in the main thread
            signal.signal(signal.SIGINT, self.request_stop)
            signal.signal(signal.SIGTERM, self.request_stop)
        for child in self.children:
            self._spawn(child)
        if on_started is not None:
            threading.Thread(target=on_started, daemon=True).start()
        # Starting a server can take seconds: its own thread, so children are watched meanwhile.
        server_watch = threading.Thread(target=self._watch_servers, name="server-watch", daemon=True)
        server_watch.start()
        while not self.stopping.wait(0.5):
            self._watch()
        server_watch.join()  # no restart of a server may race the shutdown
        self.stop_children()
        if self.failure:
            self.say("supervisor", self.failure)
            return 1
        return 0

    def _watch(self) -> None:
        now = time.monotonic()
        for child in self.children:
            if child.restart_at is not None:
                if now >= child.restart_at:
                    self._spawn(child)
                continue
            code = child.process.poll() if child.process else None
            if code is None:
                continue
            child.crashes = [t for t in child.crashes if now - t < CRASH_WINDOW_SECONDS] + [now]
            if len(child.crashes) >= MAX_CRASHES_IN_WINDOW:
                self.failure = (
                    f"{child.spec.name} exited {len(child.crashes)} times within {CRASH_WINDOW_SECONDS} s "
                    f"(last exit code {code}); stopping. See its output above."
                )
                self.stopping.set()
                return
            delay = min(30.0, 2 ** (len(child.crashes) - 1))
            child.restart_at = now + delay
            self.say("supervisor", f"{child.spec.name} exited with code {code}; restarting in {delay:.0f} s")

    def _watch_servers(self) -> None:
        while not self.stopping.wait(SERVER_CHECK_SECONDS):
            for server in self.servers:
                if self.stopping.is_set():
                    return
                self._check_server(server, time.monotonic())

    def _check_server(self, server: WatchedServer, now: float) -> None:
        name = server.spec.name
        try:
            running = server.spec.is_running()
        except Exception:  # a check that fails says nothing about the server: look again later
            return
        if running:
            server.failures, server.down_since = 0, None
            return
        if server.down_since is None:
            server.down_since = now
        if now < server.retry_at:
            return
        try:
            server.spec.start()
        except Exception as exc:
            server.failures += 1
            delay = min(SERVER_MAX_DELAY_SECONDS, 2.0 ** (server.failures - 1))
            server.retry_at = time.monotonic() + delay
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            self.say(
                "supervisor",
                f"{name} is not running and did not start (attempt {server.failures}: {reason}); "
                f"trying again in {delay:.0f} s",
            )
            return
        down = time.monotonic() - server.down_since
        self.say("supervisor", f"{name} was not running; restarted it (down {down:.0f} s)")
        server.failures, server.down_since, server.retry_at = 0, None, 0.0

    def stop_children(self) -> None:
        # Stop in reverse start order: scheduler and beat first (no new work), then the worker, then the web.
        for child in reversed(self.children):
            process = child.process
            if process is None or process.poll() is not None:
                continue
            self.say("supervisor", f"stopping {child.spec.name}")
            if not stop_process_group(process, grace_seconds=STOP_GRACE_SECONDS):
                self.say("supervisor", f"{child.spec.name} ignored SIGTERM for {STOP_GRACE_SECONDS} s; killing it")
