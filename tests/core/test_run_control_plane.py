"""`make run` end to end: the supervisor command starts everything, stops on SIGINT, and reuses data."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest
from django.conf import settings

from tests.conftest import control_plane_env, control_plane_spawn, free_port, stop_control_plane

ROOT = Path(__file__).resolve().parents[2]
COUNT_OPERATORS = (
    "from django.contrib.auth import get_user_model; "
    "print(get_user_model().objects.filter(username='operator').count())"
)

pytestmark = pytest.mark.skipif(
    not (settings.USE_EMBEDDED_POSTGRES and settings.USE_EMBEDDED_REDIS),
    reason="needs the embedded servers (DATABASE_URL/REDIS_URL are set)",
)


def _readyz(port: int) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=3) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
    except OSError:
        return 0, {}


def test_control_plane_starts_is_ready_stops_cleanly_and_keeps_its_data(tmp_path):
    web_port = free_port()
    env = control_plane_env(tmp_path / "var", web_port)
    log = tmp_path / "run.log"
    process = control_plane_spawn(env, log)
    try:
        deadline = time.monotonic() + 90
        status = (0, {})
        while time.monotonic() < deadline and status[0] != 200:
            assert process.poll() is None, log.read_text()[-3000:]
            time.sleep(1)
            status = _readyz(web_port)
        assert status[0] == 200, (status, log.read_text()[-3000:])
        children = psutil.Process(process.pid).children(recursive=True)
        assert len(children) >= 3
    finally:
        stop_control_plane(process, env)
    output = log.read_text()
    assert process.returncode == 0, output[-3000:]
    assert "username: operator" in output
    assert "Perfpilot stopped." in output
    time.sleep(1)
    assert [c.pid for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE] == []
    assert not (tmp_path / "var" / "postgres" / "data" / "postmaster.pid").exists()

    # Second start: the account from the first start is still there; no new password printed.
    log.write_text("")
    process = control_plane_spawn(env, log)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and _readyz(web_port)[0] != 200:
            assert process.poll() is None, log.read_text()[-3000:]
            time.sleep(1)
        result = subprocess.run(
            [
                sys.executable,
                "manage.py",
                "shell",
                "--no-imports",
                "-c",
                COUNT_OPERATORS,
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        assert result.stdout.strip() == "1"
    finally:
        stop_control_plane(process, env)
    assert "username: operator" not in log.read_text()
    assert process.returncode == 0
