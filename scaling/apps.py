from __future__ import annotations

from django.apps import AppConfig


class ScalingConfig(AppConfig):
    name = "scaling"
    verbose_name = "Scaling"

    def ready(self) -> None:
        from core.registry import registry

        registry.discover("executors", "scaling.executors")
        # What the perfpilot collector stores of this app's own events (monitoring reads no other app).
        from scaling.event_series import SCALING_EVENT_SERIES

        registry.register("event_series", "scaling", SCALING_EVENT_SERIES)
