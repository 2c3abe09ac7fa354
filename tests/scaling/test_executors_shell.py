"""Shell command executors: off unless the admin setting enables them; argv built without a shell."""

from __future__ import annotations

import json
import sys

import pytest

from core.errors import InvalidInput
from scaling.executors.base import ExecutorContext, ExecutorError, executor_class, executor_for
from scaling.executors.shell import build_argv


def test_shell_executor_is_refused_while_the_setting_is_off(settings):
    settings.SCALING_SHELL_ENABLED = False
    with pytest.raises(InvalidInput) as refused:
        executor_class("shell").validate_config({"scale_command": "true", "current_command": "echo 1"})
    assert refused.value.field == "executor_kind"
    executor = executor_for(
        "shell", {"scale_command": "true", "current_command": "echo 1"}, context=ExecutorContext(service="s")
    )
    with pytest.raises(ExecutorError, match="disabled"):
        executor.current()


def test_shell_values_never_become_extra_arguments():
    argv = build_argv("scale --service {service} --to {replicas}", service="a; rm -rf / #", replicas=3)
    assert argv == ["scale", "--service", "a; rm -rf / #", "--to", "3"]


def test_shell_executor_runs_its_templates_when_enabled(settings, tmp_path):
    settings.SCALING_SHELL_ENABLED = True
    state = tmp_path / "count"
    state.write_text("2")
    script = f"import sys, pathlib; pathlib.Path({json.dumps(str(state))}).write_text(sys.argv[2])"
    config = executor_class("shell").validate_config(
        {
            "scale_command": f"{sys.executable} -c '{script}' {{service}} {{replicas}}",
            "current_command": f"cat {state}",
        }
    )
    executor = executor_for("shell", config, context=ExecutorContext(service="batch"))
    assert executor.current() == 2
    executor.scale_to(6)
    assert state.read_text() == "6"
    assert executor.current() == 6


def test_shell_failing_command_is_an_executor_error(settings):
    settings.SCALING_SHELL_ENABLED = True
    executor = executor_for(
        "shell", {"scale_command": "false", "current_command": "echo many"}, context=ExecutorContext(service="s")
    )
    with pytest.raises(ExecutorError, match="exited with 1"):
        executor.scale_to(2)
    with pytest.raises(ExecutorError, match="not a whole number"):
        executor.current()
