from __future__ import annotations

from django.apps import AppConfig


class ScalingConfig(AppConfig):
    name = "scaling"
    verbose_name = "Scaling"

    def ready(self) -> None:
        from core.registry import registry

        registry.discover("executors", "scaling.executors")
