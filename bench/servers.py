"""The processes benchmarks talk to: gunicorn started exactly as `make run` starts it, and Celery."""

from __future__ import annotations

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
        yield port
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
