"""A small process supervisor for `make run`: web, worker and beat as child processes.

Children run in their own sessions, so Ctrl-C reaches only this supervisor; it then stops them
in order (SIGTERM, then SIGKILL after a grace period). A child that dies is restarted with a
growing delay; one that keeps crashing stops the whole control plane with a clear message.
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


class Supervisor:
    def __init__(self, specs: list[ChildSpec], *, out: IO[str] = sys.stdout) -> None:
        self.children = [Child(spec) for spec in specs]
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
        while not self.stopping.wait(0.5):
            self._watch()
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

    def stop_children(self) -> None:
        # Stop in reverse start order: beat first (no new work), then the worker, then the web.
        for child in reversed(self.children):
            process = child.process
            if process is None or process.poll() is not None:
                continue
            self.say("supervisor", f"stopping {child.spec.name}")
            if not stop_process_group(process, grace_seconds=STOP_GRACE_SECONDS):
                self.say("supervisor", f"{child.spec.name} ignored SIGTERM for {STOP_GRACE_SECONDS} s; killing it")
