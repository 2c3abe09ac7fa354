from __future__ import annotations

from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    name = "monitoring"
    verbose_name = "Monitoring"

    def ready(self) -> None:
        from core.registry import registry
        from monitoring.exposition import CollectedSeriesCollector, CollectorConnectionsCollector, ForwardingCollector

        registry.discover("collectors", "monitoring.collectors", skip=("base", "kept"))
        registry.discover("protocols", "monitoring.protocols")
        # /metrics (core) asks the registry for what apps expose at scrape time.
        registry.register("metrics", "collected_series", CollectedSeriesCollector)
        registry.register("metrics", "collector_connections", CollectorConnectionsCollector)
        registry.register("metrics", "forwarding", ForwardingCollector)
        registry.register("defaults", "monitoring", _install_defaults)


def _install_defaults() -> list[str]:
    from monitoring.services.targets import targets_register_builtin

    registered = targets_register_builtin()
    return [f"registered the control plane's own targets: {', '.join(registered)}"] if registered else []
