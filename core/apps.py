from __future__ import annotations

from django.apps import AppConfig


class CoreConfig(AppConfig):
    """What every app shares: tokens, audit, roles, errors, health, the plug-in registry.

    The label stays "config", the app's label before the core app was split out of the project
    package: the tables (config_apitoken, config_auditevent) and the applied-migration rows of
    existing installations keep their names, so upgrading needs no migration of its own.
    """

    name = "core"
    label = "config"
    verbose_name = "Control plane"

    def ready(self) -> None:
        from core import checks, signals  # noqa: F401  (registers checks and Celery signals)
