from __future__ import annotations

from django.apps import AppConfig


class AlertsConfig(AppConfig):
    name = "alerts"
    verbose_name = "Alerts"

    def ready(self) -> None:
        from core.events import failure_event
        from core.registry import registry

        registry.discover("transports", "alerts.transports")
        # What the perfpilot collector stores of this app's own events (monitoring reads no other app).
        from alerts.event_series import ALERTS_EVENT_SERIES

        registry.register("event_series", "alerts", ALERTS_EVENT_SERIES)
        registry.register("defaults", "alerts", _install_defaults)
        # Failures other apps report (a tuner run, a scaling action) become event alerts.
        failure_event.connect(_failure_event_alert, dispatch_uid="alerts.failure_event_alert")


def _install_defaults() -> list[str]:
    from alerts.services.defaults import rules_install_defaults

    installed = rules_install_defaults()
    return [f"installed the default alert rules: {len(installed)} rules"] if installed else []


def _failure_event_alert(sender, *, kind: str, target, labels: dict[str, str], message: str, **kwargs) -> None:
    from alerts.services import alert_event_emit

    alert_event_emit(kind=kind, target=target, labels=labels, message=message)
