"""The executor plug-in interface and its registry.

An executor reports how many replicas a service runs (`current()`) and applies a desired count
(`scale_to()`). It never decides anything: the evaluation service calls it. Adding a kind = one
module with a @register class + one test file. Errors are ExecutorError, recorded on the decision.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import ClassVar

from core import outbound
from core.errors import InvalidInput
from core.registry import UnknownPlugin, registry

logger = logging.getLogger(__name__)


class ExecutorError(Exception):
    """The executor could not read or change the replica count. Shown to operators as the decision's error."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent  # a configuration problem, not a passing one


@dataclass(frozen=True)
class ConfigField:
    name: str
    help: str
    required: bool = False
    secret: bool = False  # stored encrypted, never shown back
    kind: str = "str"  # str, int, float, bool, dict


@dataclass(frozen=True)
class ExecutorContext:
    """What an executor may know about its service besides its config."""

    service: str
    applied_replicas: int | None = None
    min_replicas: int = 1


class Executor:
    """Base class. Subclasses set kind, label and fields and implement current() and scale_to()."""

    kind: ClassVar[str]
    label: ClassVar[str]
    fields: ClassVar[tuple[ConfigField, ...]] = ()
    default_timeout: ClassVar[float] = 5.0

    def __init__(self, config: dict, *, context: ExecutorContext) -> None:
        self.config = config
        self.context = context
        self.timeout = float(config.get("timeout_seconds") or self.default_timeout)

    def current(self) -> int:
        """The replica count running now. Raise ExecutorError when it cannot be read."""
        raise NotImplementedError

    def scale_to(self, replicas: int) -> str:
        """Ask for `replicas`; return a short description of what was done. Raise ExecutorError on failure."""
        raise NotImplementedError

    @classmethod
    def secret_names(cls) -> set[str]:
        return {f.name for f in cls.fields if f.secret}

    @classmethod
    def validate_config(cls, config: dict) -> dict:
        """The config with known fields only, typed; InvalidInput (field "executor_config.<name>") otherwise."""
        known = {f.name: f for f in cls.fields}
        unknown = sorted(set(config) - set(known) - {"timeout_seconds"})
        if unknown:
            raise InvalidInput(
                f"Unknown {cls.kind} executor setting(s): {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known)) or 'none'}.",
                field=f"executor_config.{unknown[0]}",
            )
        cleaned: dict = {}
        timeout = config.get("timeout_seconds")
        if timeout not in (None, ""):
            try:
                cleaned["timeout_seconds"] = float(timeout)
            except (TypeError, ValueError) as exc:
                raise InvalidInput(
                    "timeout_seconds must be a number.", field="executor_config.timeout_seconds"
                ) from exc
            if not 0.1 <= cleaned["timeout_seconds"] <= 120:
                raise InvalidInput(
                    "timeout_seconds must be between 0.1 and 120.", field="executor_config.timeout_seconds"
                )
        for spec in cls.fields:
            value = config.get(spec.name)
            if value in (None, ""):
                continue
            cleaned[spec.name] = _typed(spec, value)
        return cleaned

    @classmethod
    def check_required(cls, config: dict) -> None:
        for spec in cls.fields:
            if spec.required and config.get(spec.name) in (None, "", {}):
                raise InvalidInput(
                    f"The {cls.label} executor needs {spec.name} ({spec.help}).", field=f"executor_config.{spec.name}"
                )


def _typed(spec: ConfigField, value):
    where = f"executor_config.{spec.name}"
    try:
        if spec.kind == "int":
            if isinstance(value, bool):
                raise ValueError(value)
            return int(value)
        if spec.kind == "float":
            return float(value)
        if spec.kind == "bool":
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("true", "1", "yes", "on"):
                return True
            if str(value).lower() in ("false", "0", "no", "off"):
                return False
            raise ValueError(value)
        if spec.kind == "dict":
            if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
                raise ValueError(value)
            return dict(value)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"{spec.name} must be a {spec.kind}.", field=where) from exc
    if not isinstance(value, str):
        raise InvalidInput(f"{spec.name} must be text.", field=where)
    return value.strip()


def check_url_field(url: str, *, field: str) -> None:
    """Save-time outbound policy check of an address in an executor's config (checked again at connect time)."""
    try:
        outbound.check_url_at_save(url, what=f"{field.rsplit('.', 1)[-1]}'s address")
    except outbound.OutboundRefused as exc:
        raise outbound.refused_input(exc, field=field) from exc


# Executor modules register themselves here (`@register`); scaling's AppConfig discovers them.
register = registry.plugin("executors")


def executor_classes() -> dict[str, type[Executor]]:
    return dict(registry.all("executors"))


def executor_class(kind: str) -> type[Executor]:
    try:
        return registry.get("executors", kind)
    except UnknownPlugin as exc:
        raise ExecutorError(f"no executor for kind {kind!r} ({exc.reason})", permanent=True) from exc


def executor_for(kind: str, config: dict, *, context: ExecutorContext) -> Executor:
    return executor_class(kind)(config, context=context)
