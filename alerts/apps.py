from __future__ import annotations

from django.apps import AppConfig


class AlertsConfig(AppConfig):
    name = "alerts"
    verbose_name = "Alerts"

    def ready(self) -> None:
        from core.registry import registry

        registry.discover("transports", "alerts.transports")
        registry.register("defaults", "alerts", _install_defaults)


def _install_defaults() -> list[str]:
    from alerts.services.defaults import rules_install_defaults

    installed = rules_install_defaults()
    return [f"installed the default alert rules: {len(installed)} rules"] if installed else []
