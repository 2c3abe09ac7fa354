from __future__ import annotations

import io
import itertools
import sys
import threading
import time

from core import supervisor as supervisor_module
from core.supervisor import ChildSpec, Supervisor


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def _run_in_thread(sup: Supervisor):
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("code", sup.run(handle_signals=False)), daemon=True)
    thread.start()
    return thread, result


def _wait(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_children_output_is_prefixed_and_stop_terminates_them():
    out = io.StringIO()
    sup = Supervisor(
        [ChildSpec("sleeper", _python("import time; print('hello', flush=True); time.sleep(60)"))], out=out
    )
    thread, result = _run_in_thread(sup)
    assert _wait(lambda: "sleeper    | hello" in out.getvalue())
    process = sup.children[0].process
    sup.request_stop()
    thread.join(30)
    assert result["code"] == 0
    assert process.poll() is not None


def test_a_crashed_child_is_restarted():
    out = io.StringIO()
    sup = Supervisor([ChildSpec("flaky", _python("import time; time.sleep(0.3); raise SystemExit(3)"))], out=out)
    thread, _ = _run_in_thread(sup)
    assert _wait(lambda: out.getvalue().count("started flaky") >= 2)
    assert "flaky exited with code 3; restarting in 1 s" in out.getvalue()
    sup.request_stop()
    thread.join(30)


def test_a_crash_loop_stops_everything_with_a_clear_message(monkeypatch):
    monkeypatch.setattr(supervisor_module, "MAX_CRASHES_IN_WINDOW", 2)
    out = io.StringIO()
    sup = Supervisor(
        [
            ChildSpec("broken", _python("raise SystemExit(2)")),
            ChildSpec("healthy", _python("import time; time.sleep(60)")),
        ],
        out=out,
    )
    thread, result = _run_in_thread(sup)
    thread.join(30)
    assert result["code"] == 1
    assert "broken exited 2 times within 60 s (last exit code 2); stopping." in out.getvalue()
    assert sup.children[1].process.poll() is not None


def test_a_child_that_ignores_sigterm_is_killed(monkeypatch):
    monkeypatch.setattr(supervisor_module, "STOP_GRACE_SECONDS", 1)
    out = io.StringIO()
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"
    )
    sup = Supervisor([ChildSpec("stubborn", _python(code))], out=out)
    thread, _ = _run_in_thread(sup)
    assert _wait(lambda: "ready" in out.getvalue())
    sup.request_stop()
    thread.join(30)
    assert "stubborn ignored SIGTERM for 1 s; killing it" in out.getvalue()
    assert sup.children[0].process.returncode == -9


def _sleeper() -> ChildSpec:
    return ChildSpec("sleeper", _python("import time; time.sleep(60)"))


def test_an_embedded_server_killed_with_sigkill_is_started_again(tmp_path, monkeypatch):
    import os
    import signal

    from core.embedded import EmbeddedRedis
    from core.supervisor import ServerSpec
    from tests.conftest import free_port

    monkeypatch.setattr(supervisor_module, "SERVER_CHECK_SECONDS", 0.2)
    server = EmbeddedRedis(root=tmp_path / "redis", port=free_port(), password="supervised-redis-pw")
    server.start()
    out = io.StringIO()
    sup = Supervisor([_sleeper()], servers=[ServerSpec("embedded Redis", server.is_running, server.start)], out=out)
    thread, _ = _run_in_thread(sup)
    try:
        os.kill(int(server.pidfile.read_text()), signal.SIGKILL)
        restarted = "embedded Redis was not running; restarted it"
        assert _wait(lambda: restarted in out.getvalue(), timeout=30), out.getvalue()
        assert server.is_running()
        assert out.getvalue().count("embedded Redis") == 1  # one line for the restart
    finally:
        sup.request_stop()
        thread.join(30)
        server.stop()


def test_a_server_that_does_not_start_is_retried_with_growing_delays(monkeypatch):
    from core.supervisor import ServerSpec

    monkeypatch.setattr(supervisor_module, "SERVER_CHECK_SECONDS", 0.05)
    attempts = []

    def refuse():
        attempts.append(time.monotonic())
        raise RuntimeError("port 5432 is taken by another program")

    out = io.StringIO()
    sup = Supervisor([_sleeper()], servers=[ServerSpec("embedded PostgreSQL", lambda: False, refuse)], out=out)
    thread, _ = _run_in_thread(sup)
    try:
        assert _wait(lambda: len(attempts) >= 3, timeout=15)
    finally:
        sup.request_stop()
        thread.join(30)
    gaps = [round(later - earlier) for earlier, later in itertools.pairwise(attempts)]
    assert gaps[:2] == [1, 2]
    assert "embedded PostgreSQL is not running and did not start (attempt 2: port 5432 is taken" in out.getvalue()
    assert "trying again in 2 s" in out.getvalue()
    assert sup.failure is None  # never given up on
