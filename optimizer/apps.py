from __future__ import annotations

from django.apps import AppConfig


class OptimizerConfig(AppConfig):
    name = "optimizer"
    verbose_name = "Optimizer"

    def ready(self) -> None:
        from core.registry import registry
        from optimizer.tuners.base import all_tuners, tuner_default_schedule

        registry.discover("tuners", "optimizer.tuners", skip=("base", "querytree", "cachekeys"))
        # What the perfpilot collector stores of this app's own events (monitoring reads no other app).
        from optimizer.event_series import OPTIMIZER_EVENT_SERIES

        registry.register("event_series", "optimizer", OPTIMIZER_EVENT_SERIES)
        # Each tuner's declared schedule is a default beat entry; core's sync finds it in the registry.
        for tuner in all_tuners().values():
            if tuner.schedule is not None:
                entry = tuner_default_schedule(tuner)
                registry.register("schedules", entry.name, entry)
