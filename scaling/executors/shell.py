"""Shell command templates, only when PERFPILOT_SCALING_SHELL_ENABLED is true (an admin's setting).

Templates are split with shlex first and each argument is then formatted, so a value can never add
arguments or shell syntax; the command runs without a shell. Placeholders: {service}, {replicas}.
`current_command` must print the current count; `scale_command` must exit 0.
"""

from __future__ import annotations

import shlex
import subprocess

from django.conf import settings

from core.errors import InvalidInput
from scaling.executors.base import ConfigField, Executor, ExecutorError, register

PLACEHOLDERS = ("service", "replicas")


def build_argv(template: str, **values) -> list[str]:
    try:
        parts = shlex.split(template)
    except ValueError as exc:
        raise ExecutorError(f"The command template cannot be split: {exc}", permanent=True) from exc
    if not parts:
        raise ExecutorError("The command template is empty.", permanent=True)
    try:
        return [part.format(**{k: str(v) for k, v in values.items()}) for part in parts]
    except (KeyError, IndexError, ValueError) as exc:
        raise ExecutorError(f"Unknown placeholder in the command template: {exc}", permanent=True) from exc


@register
class ShellExecutor(Executor):
    kind = "shell"
    label = "Shell command"
    fields = (
        ConfigField(
            "scale_command", "argv template run to scale, e.g. /usr/local/bin/scale {service} {replicas}", True
        ),
        ConfigField("current_command", "argv template that prints the current count, e.g. /usr/local/bin/count", True),
    )
    default_timeout = 30.0

    @classmethod
    def validate_config(cls, config: dict) -> dict:
        if not settings.SCALING_SHELL_ENABLED:
            raise InvalidInput(
                "Shell executors are disabled; an admin enables them with PERFPILOT_SCALING_SHELL_ENABLED=true.",
                field="executor_kind",
            )
        cleaned = super().validate_config(config)
        for name in ("scale_command", "current_command"):
            if name in cleaned:
                try:
                    build_argv(cleaned[name], service="x", replicas=1)
                except ExecutorError as exc:
                    raise InvalidInput(str(exc), field=f"executor_config.{name}") from exc
        return cleaned

    def _run(self, template: str, **values) -> str:
        if not settings.SCALING_SHELL_ENABLED:
            raise ExecutorError("Shell executors are disabled (PERFPILOT_SCALING_SHELL_ENABLED).", permanent=True)
        argv = build_argv(template, service=self.context.service, **values)
        try:
            completed = subprocess.run(argv, capture_output=True, text=True, timeout=self.timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise ExecutorError(f"{argv[0]} did not finish within {self.timeout:g} s.") from exc
        except OSError as exc:
            raise ExecutorError(f"{argv[0]} cannot be run: {exc}") from exc
        if completed.returncode != 0:
            detail = (completed.stderr or completed.stdout).strip()[:500]
            raise ExecutorError(f"{argv[0]} exited with {completed.returncode}" + (f": {detail}" if detail else ""))
        return completed.stdout

    def current(self) -> int:
        output = self._run(self.config["current_command"], replicas="").strip()
        try:
            return int(output.split()[0])
        except (ValueError, IndexError) as exc:
            raise ExecutorError(f"current_command printed {output[:80]!r}, not a whole number.") from exc

    def scale_to(self, replicas: int) -> str:
        self._run(self.config["scale_command"], replicas=replicas)
        return f"scale_command ran for {replicas} replicas"
