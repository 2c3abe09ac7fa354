"""Collectors, one module per target kind, found through the registry in base.py."""

from __future__ import annotations

from monitoring.collectors.base import Collector, CollectorError, CollectResult, Measurement, collector_for

__all__ = ["CollectResult", "Collector", "CollectorError", "Measurement", "collector_for"]
