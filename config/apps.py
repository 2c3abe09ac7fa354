from __future__ import annotations

from django.apps import AppConfig


class ControlPlaneConfig(AppConfig):
    name = "config"
    label = "config"
    verbose_name = "Control plane"

    def ready(self) -> None:
        from config import checks, signals  # noqa: F401  (registers checks and Celery signals)
