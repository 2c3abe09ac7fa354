from __future__ import annotations

from django.apps import AppConfig


class OptimizerConfig(AppConfig):
    name = "optimizer"
    verbose_name = "Optimizer"

    def ready(self) -> None:
        from core.registry import registry

        registry.discover("tuners", "optimizer.tuners", skip=("base", "querytree"))
