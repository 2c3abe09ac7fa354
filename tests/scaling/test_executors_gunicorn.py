"""A gunicorn started by the test is scaled by TTIN and TTOU, and its worker count verified."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest

from core.supervisor import stop_process_group
from scaling.executors.base import ExecutorContext, ExecutorError, executor_for
from tests.conftest import ROOT, free_port


def wait_until(predicate, *, timeout: float = 30.0, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def workers_of(pid: int) -> int:
    return sum(1 for c in psutil.Process(pid).children() if c.status() != psutil.STATUS_ZOMBIE)


@contextmanager
def running_gunicorn(tmp_path: Path):
    """A gunicorn master with 2 workers and a pidfile, stopped on exit."""
    pidfile = tmp_path / "gunicorn.pid"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--workers",
            "2",
            "--bind",
            f"127.0.0.1:{free_port()}",
            "--pid",
            str(pidfile),
            "--graceful-timeout",
            "2",
            "tests.scaling.wsgi_app:app",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), what="the gunicorn pidfile")
        wait_until(lambda: workers_of(process.pid) == 2, what="2 gunicorn workers")
        yield process, pidfile
    finally:
        stop_process_group(process)


@pytest.fixture
def gunicorn(tmp_path: Path):
    with running_gunicorn(tmp_path) as started:
        yield started


def test_gunicorn_grows_with_ttin_and_shrinks_with_ttou(gunicorn):
    process, pidfile = gunicorn
    executor = executor_for("gunicorn", {"pidfile": str(pidfile)}, context=ExecutorContext(service="web"))
    assert executor.current() == 2
    assert "SIGTTIN" in executor.scale_to(5)
    wait_until(lambda: workers_of(process.pid) == 5, what="5 workers")
    assert executor.current() == 5
    assert "SIGTTOU" in executor.scale_to(1)
    wait_until(lambda: workers_of(process.pid) == 1, what="1 worker")
    assert executor.current() == 1


def test_gunicorn_after_a_hup_returns_to_its_configured_count(gunicorn):
    # The evaluation service's drift handling re-applies after this (see test_evaluation).
    process, pidfile = gunicorn
    executor = executor_for("gunicorn", {"pidfile": str(pidfile)}, context=ExecutorContext(service="web"))
    executor.scale_to(4)
    wait_until(lambda: executor.current() == 4, what="4 workers")
    os.kill(process.pid, signal.SIGHUP)
    wait_until(lambda: executor.current() == 2, what="the HUP to reset the workers to 2")


def test_gunicorn_missing_pidfile_or_dead_master_is_an_executor_error(tmp_path):
    missing = executor_for("gunicorn", {"pidfile": str(tmp_path / "nope.pid")}, context=ExecutorContext(service="w"))
    with pytest.raises(ExecutorError, match="Cannot read the gunicorn pid"):
        missing.current()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / "dead.pid").write_text(str(dead.pid))
    stale = executor_for("gunicorn", {"pidfile": str(tmp_path / "dead.pid")}, context=ExecutorContext(service="w"))
    with pytest.raises(ExecutorError, match="No gunicorn master"):
        stale.scale_to(2)
