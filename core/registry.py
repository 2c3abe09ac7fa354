"""The one plug-in registry: collectors, tuners, executors, transports and whatever else apps offer.

A plug-in kind is one module that registers its class when imported:

    @registry.plugin("tuners")
    class VacuumTuner(Tuner):
        kind = "vacuum"

Each app's AppConfig.ready() calls `registry.discover(category, package)`, which imports every
module of the package (one that fails to import is recorded, not fatal: the other kinds still
work, and asking for the broken one says why). Once every app is ready the registry is frozen, as
NetBox's is: nothing registered later can change what a running process does behind its back.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
from collections.abc import Callable, Iterator
from types import MappingProxyType
from typing import Any, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")


class UnknownPlugin(LookupError):
    """No plug-in of that kind in that category; the message says which kinds there are, or why it failed."""

    def __init__(self, category: str, kind: str, reason: str) -> None:
        super().__init__(f"no {category} plug-in of kind {kind!r} ({reason})")
        self.category = category
        self.kind = kind
        self.reason = reason


class RegistryFrozen(RuntimeError):
    """A registration after the apps finished loading."""


class Registry:
    def __init__(self, *, frozen_with_apps: bool = True) -> None:
        self._entries: dict[str, dict[str, Any]] = {}
        self._import_errors: dict[str, dict[str, str]] = {}
        self._frozen = False
        self._frozen_with_apps = frozen_with_apps

    # --- filling (at import and app loading time) ------------------------------------------------

    def register(self, category: str, kind: str, item: T) -> T:
        if self.frozen:
            raise RegistryFrozen(f"the registry is frozen; {category}/{kind} must register while apps load")
        entries = self._entries.setdefault(category, {})
        if kind in entries and entries[kind] is not item:
            raise ValueError(f"{category} plug-in {kind!r} is registered twice ({entries[kind]!r} and {item!r})")
        entries[kind] = item
        return item

    def plugin(self, category: str) -> Callable[[type[T]], type[T]]:
        """Class decorator: registers the class under its `kind` attribute."""

        def decorate(cls: type[T]) -> type[T]:
            return self.register(category, cls.kind, cls)  # type: ignore[attr-defined]

        return decorate

    def discover(self, category: str, package: str, *, skip: tuple[str, ...] = ("base",)) -> None:
        """Import every module of `package` so that its plug-ins register themselves."""
        self._entries.setdefault(category, {})
        errors = self._import_errors.setdefault(category, {})
        path = importlib.import_module(package).__path__
        for module in pkgutil.iter_modules(path):
            if module.name in skip or module.name.startswith("_"):
                continue
            try:
                importlib.import_module(f"{package}.{module.name}")
            except Exception as exc:  # one broken plug-in must not hide the others
                errors[module.name] = f"{type(exc).__name__}: {exc}"
                logger.exception("%s plug-in module %s.%s failed to import", category, package, module.name)

    def freeze(self) -> None:
        self._frozen = True

    @property
    def frozen(self) -> bool:
        # Django sets apps.ready after every AppConfig.ready() has run: registration is over.
        from django.apps import apps

        return self._frozen or (self._frozen_with_apps and apps.ready)

    # --- reading ------------------------------------------------------------------------------

    def get(self, category: str, kind: str) -> Any:
        try:
            return self._entries[category][kind]
        except KeyError:
            reason = self._import_errors.get(category, {}).get(kind)
            if reason is None:
                known = ", ".join(sorted(self._entries.get(category, {}))) or "none"
                reason = f"unknown kind; known: {known}"
            raise UnknownPlugin(category, kind, reason) from None

    def all(self, category: str) -> MappingProxyType[str, Any]:
        """The category's plug-ins by kind, read-only, in registration order."""
        return MappingProxyType(self._entries.get(category, {}))

    def import_errors(self, category: str) -> dict[str, str]:
        return dict(self._import_errors.get(category, {}))

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)


registry = Registry()
