"""Current values of the collected series in Prometheus format, so Prometheus can scrape Perfpilot.

Each metric becomes a gauge family `perfpilot_<metric>` with the target's name and the
series' labels as labels; only series seen in the last 10 minutes are exposed. The control plane's
own series (monitoring/collectors/perfpilot.py) are named perfpilot_* already and keep their name,
and their own `target` label (the target a run optimized), as PromQL shows them.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict

from prometheus_client.core import GaugeMetricFamily

from core.heartbeat import worker_process_stats
from core.outages import failure_log
from monitoring.selectors.targets import current_values

logger = logging.getLogger(__name__)
_INVALID = re.compile(r"[^a-zA-Z0-9_]")


def _name(text: str) -> str:
    cleaned = _INVALID.sub("_", text)
    return cleaned if not cleaned[:1].isdigit() else f"_{cleaned}"


class CollectedSeriesCollector:
    def collect(self):
        families: dict[str, list] = defaultdict(list)
        for current in current_values():
            families[current.series.metric].append(current)
        for metric, values in sorted(families.items()):
            label_names = sorted({"target", *(_name(k) for v in values for k in v.series.labels)})
            exposed = _name(metric) if metric.startswith("perfpilot_") else f"perfpilot_{_name(metric)}"
            family = GaugeMetricFamily(exposed, f"Latest collected value of {metric}.", labels=label_names)
            for current in values:
                labels = {_name(k): str(v) for k, v in current.series.labels.items()}
                labels.setdefault("target", current.series.target.name if current.series.target_id else "")
                family.add_metric(
                    [labels.get(name, "") for name in label_names], current.value, timestamp=current.at.timestamp()
                )
            yield family


class CollectorConnectionsCollector:
    """Connections to targets the worker processes keep between collections (monitoring/collectors/kept.py),
    as each process last reported it while collecting."""

    def collect(self):
        family = GaugeMetricFamily(
            "perfpilot_collector_connections",
            "Connections to targets kept open by a worker process between collections.",
            labels=["worker", "pid"],
        )
        try:
            processes = worker_process_stats()
        except Exception as exc:  # Redis down: the rest of /metrics still answers
            failure_log(logger, "collector connection counts unavailable", exc)
            return
        for process in processes:
            if "collector_connections" in process:
                family.add_metric([process["worker"], str(process["pid"])], process["collector_connections"])
        yield family


class ForwardingCollector:
    """Remote-write forwarding's queue and counters (monitoring/services/forwarding.py), when it is on."""

    def collect(self):
        from prometheus_client.core import CounterMetricFamily

        from monitoring.selectors.forwarding import forwarding_status

        status = forwarding_status()
        if not status.enabled and not status.sent_requests and not status.lag_samples:
            return
        yield GaugeMetricFamily(
            "perfpilot_forward_lag_samples",
            "Samples stored but not yet accepted by the remote end.",
            status.lag_samples,
        )
        yield GaugeMetricFamily(
            "perfpilot_forward_lag_seconds", "Age of the oldest sample not yet forwarded.", status.lag_seconds
        )
        for name, help_text, value in (
            ("sent_samples", "Samples the remote end accepted.", status.sent_samples),
            ("sent_requests", "Remote-write requests the remote end accepted.", status.sent_requests),
            ("failed_requests", "Requests retried (5xx, 429, no connection).", status.failed_requests),
            ("rejected_requests", "Requests the remote end refused with a 4xx (dropped).", status.rejected_requests),
            ("rejected_samples", "Samples in requests the remote end refused.", status.rejected_samples),
            ("dropped_samples", "Samples dropped past PERFPILOT_FORWARD_MAX_QUEUE.", status.dropped_samples),
        ):
            yield CounterMetricFamily(f"perfpilot_forward_{name}", help_text, value=value)
