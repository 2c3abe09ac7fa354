"""The metric names collected so far, with the unit their series carry (for pickers and formats)."""

from __future__ import annotations

from monitoring.models import Series


def metric_units() -> dict[str, str]:
    """Every metric name that has a series, sorted, mapped to its unit ("" when its series have none)."""
    units: dict[str, str] = {}
    for metric, unit in Series.objects.order_by("metric", "-unit").values_list("metric", "unit").distinct():
        units.setdefault(metric, unit)  # "-unit": a series with a unit wins over one without
    return units
