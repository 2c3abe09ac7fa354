"""The processes benchmarks talk to: gunicorn started exactly as `make run` starts it, and Celery."""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

from core.embedded import embedded_servers_from_settings
from core.supervisor import gunicorn_command

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def web_server(*, extra_env: dict[str, str] | None = None) -> Iterator[int]:
    """gunicorn on a free port (same worker model, hooks, access log and multiprocess metrics as
    `make run`) on the bench's database and Redis; yields the port and stops it afterwards."""
    with web_server_process(extra_env=extra_env) as (port, _process):
        yield port


@contextmanager
def web_server_process(*, extra_env: dict[str, str] | None = None) -> Iterator[tuple[int, subprocess.Popen]]:
    """web_server(), yielding (port, gunicorn's master process) for a benchmark that measures its CPU."""
    port = free_port()
    metrics_dir = Path(tempfile.mkdtemp(prefix="perfpilot-bench-metrics-"))
    env = {
        **os.environ,
        "PERFPILOT_BIND": f"127.0.0.1:{port}",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        **(extra_env or {}),
    }
    process = subprocess.Popen(
        gunicorn_command(bind=f"127.0.0.1:{port}"),
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        _wait_until_serving(port, process)
        yield port, process
    finally:
        process.terminate()
        process.wait(20)
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _wait_until_serving(port: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("gunicorn did not start for the benchmark")


def wait_listening(port: int, process: subprocess.Popen, failure: str) -> None:
    """Wait until something accepts connections on the loopback port; SystemExit(failure) if the
    process ends first or 30 s pass."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(failure)


def celery_spawn(argv: list[str], log: str, *, extra_env: dict[str, str] | None = None) -> subprocess.Popen:
    """`celery -A config ARGV` on the bench's database and Redis, logging to var/bench/LOG."""
    return spawn([sys.executable, "-m", "celery", "-A", "config", *argv], log, extra_env=extra_env)


def spawn(argv: list[str], log: str, *, extra_env: dict[str, str] | None = None) -> subprocess.Popen:
    """ARGV in its own session (stop it with core.supervisor.stop_process_group) on the bench's
    database and Redis, from the project's folder, logging to var/bench/LOG."""
    (ROOT / "var" / "bench").mkdir(parents=True, exist_ok=True)
    handle = (ROOT / "var" / "bench" / log).open("w")
    return subprocess.Popen(
        argv,
        cwd=ROOT,
        env={**os.environ, **(extra_env or {})},
        stdout=handle,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def embedded_server_processes() -> list[psutil.Process]:
    """The bench's embedded PostgreSQL postmaster (its backends are its children) and Redis."""
    postgres, redis_server = embedded_servers_from_settings()
    pidfiles = [postgres and postgres.data / "postmaster.pid", redis_server and redis_server.pidfile]
    found = []
    for pidfile in filter(None, pidfiles):
        # One not running from its pidfile is left out here (its CPU still shows in the machine's).
        with contextlib.suppress(OSError, ValueError, IndexError, psutil.NoSuchProcess):
            found.append(psutil.Process(int(pidfile.read_text().split()[0])))
    return found
