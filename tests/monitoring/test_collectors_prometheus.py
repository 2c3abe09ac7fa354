"""The Prometheus collector against a real local HTTP server serving prometheus_client expositions."""

from __future__ import annotations

import base64
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import Metric
from prometheus_client.openmetrics import exposition as openmetrics

from core.registry import registry
from monitoring.collectors.base import COUNTER, GAUGE, CollectorError
from monitoring.collectors.prometheus import MAX_SERIES, PrometheusCollector, bucket_quantile, metric_name
from monitoring.models import Target
from monitoring.services.collection import collect_target
from tests.monitoring.conftest import stored_samples

BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
AUTH_USER, AUTH_PASSWORD = "scraper", "s3cret-pw"


class Exposition:
    """The metrics one fake application exposes; `reset()` is that application restarting."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("requests_total", "Requests.", ["path"], registry=self.registry)
        self.temperature = Gauge("temperature_celsius", "Temperature.", registry=self.registry)
        self.latency = Histogram("latency_seconds", "Latency.", ["handler"], buckets=BUCKETS, registry=self.registry)


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        server: _Server = self.server  # type: ignore[assignment]
        if self.path == "/metrics":
            self._send(200, generate_latest(server.exposition.registry), CONTENT_TYPE_LATEST)
        elif self.path == "/openmetrics":
            body = openmetrics.generate_latest(server.exposition.registry)
            self._send(200, body, openmetrics.CONTENT_TYPE_LATEST)
        elif self.path == "/auth":
            expected = "Basic " + base64.b64encode(f"{AUTH_USER}:{AUTH_PASSWORD}".encode()).decode()
            if self.headers.get("Authorization") == expected:
                self._send(200, b"up 1\n", "text/plain")
            else:
                self._send(401, b"who are you?", "text/plain")
        elif self.path == "/error":
            self._send(500, b"boom", "text/plain")
        elif self.path == "/garbage":
            self._send(200, b"<html><body>Welcome to nginx!</body></html>", "text/html")
        elif self.path == "/slow":
            time.sleep(2.5)
            self._send(200, b"up 1\n", "text/plain")
        else:
            self._send(404, b"not here", "text/plain")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the collector gave up first (the timeout test): nobody to answer

    def log_message(self, format, *args) -> None:
        return  # keep the test output clean


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    exposition: Exposition


@pytest.fixture
def exporter():
    """(base URL, exposition) of a real HTTP server in a thread."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.exposition = Exposition()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", server.exposition
    server.shutdown()
    server.server_close()


def _target(url: str, *, options: dict | None = None, timeout: int = 2, name: str = "app-metrics") -> Target:
    target = Target(name=name, kind="prometheus", timeout_seconds=timeout, options=options or {})
    target.url = url
    return target


def _series(result) -> dict[tuple[str, tuple], object]:
    return {(m.metric, tuple(sorted(m.labels.items()))): m for m in result.measurements}


def test_prometheus_is_registered_under_its_kind():
    assert registry.get("collectors", "prometheus") is PrometheusCollector


def test_metric_names_are_prefixed_and_made_safe():
    assert metric_name("http_requests", "_per_second") == "prom_http_requests_per_second"
    assert metric_name("job:Request_Latency:rate5m") == "prom_job_request_latency_rate5m"


def test_bucket_quantile_interpolates_like_histogram_quantile():
    bounds = [0.1, 0.5, 1.0, float("inf")]
    assert bucket_quantile(0.5, bounds, [0, 100, 100, 100]) == pytest.approx(0.3)
    assert bucket_quantile(0.99, bounds, [0, 0, 0, 10]) == 1.0  # in +Inf: the highest finite bound
    assert bucket_quantile(0.5, bounds, [0, 0, 0, 0]) is None


def test_counters_gauges_and_histogram_counts_are_mapped_to_prom_series(exporter):
    base, exposition = exporter
    exposition.requests.labels(path="/a").inc(3)
    exposition.temperature.set(21.5)
    exposition.latency.labels(handler="home").observe(0.3)
    series = _series(PrometheusCollector(_target(f"{base}/metrics")).collect())

    requests = series[("prom_requests_per_second", (("path", "/a"),))]
    assert requests.kind == COUNTER and requests.value == 3
    temperature = series[("prom_temperature_celsius", ())]
    assert temperature.kind == GAUGE and temperature.value == 21.5
    count = series[("prom_latency_seconds_count_per_second", (("handler", "home"),))]
    assert count.kind == COUNTER and count.value == 1
    # No quantiles without a previous scrape, and no `_created` timestamps or `_sum` series.
    assert not [m for m in series.values() if "quantile" in m.labels]
    assert not [name for name, _ in series if "created" in name or name.endswith("_sum")]


def test_histogram_percentiles_come_from_the_buckets_observed_since_the_previous_scrape(exporter):
    base, exposition = exporter
    latency = exposition.latency.labels(handler="home")
    for _ in range(100):
        latency.observe(7.0)  # before the first scrape: must not count
    collector = PrometheusCollector(_target(f"{base}/metrics"))
    collector.collect()
    for _ in range(100):
        latency.observe(0.05)
    series = _series(collector.collect())
    p = {
        q: series[("prom_latency_seconds", (("handler", "home"), ("quantile", q)))].value
        for q in ("0.5", "0.95", "0.99")
    }
    assert p["0.5"] == pytest.approx(0.05)
    assert p["0.95"] == pytest.approx(0.095)
    assert p["0.99"] == pytest.approx(0.099)


def test_no_percentiles_when_nothing_was_observed_or_the_histogram_was_reset(exporter):
    base, exposition = exporter
    exposition.latency.labels(handler="home").observe(0.3)
    collector = PrometheusCollector(_target(f"{base}/metrics"))
    collector.collect()
    idle = collector.collect()
    assert not [m for m in idle.measurements if "quantile" in m.labels]
    exposition.reset()  # the application restarted: its buckets start again from zero
    exposition.latency.labels(handler="home").observe(0.3)
    after_reset = collector.collect()
    assert not [m for m in after_reset.measurements if "quantile" in m.labels]
    exposition.latency.labels(handler="home").observe(0.3)
    assert [m for m in collector.collect().measurements if "quantile" in m.labels]


def test_summary_quantiles_are_passed_through_as_gauges(exporter):
    base, exposition = exporter

    class RpcSummary:
        def collect(self):
            summary = Metric("rpc_duration_seconds", "RPC duration.", "summary")
            for q, value in (("0.5", 0.012), ("0.9", 0.034)):
                summary.add_sample("rpc_duration_seconds", {"service": "api", "quantile": q}, value)
            summary.add_sample("rpc_duration_seconds_count", {"service": "api"}, 120)
            summary.add_sample("rpc_duration_seconds_sum", {"service": "api"}, 2.5)
            yield summary

    exposition.registry.register(RpcSummary())
    series = _series(PrometheusCollector(_target(f"{base}/metrics")).collect())
    median = series[("prom_rpc_duration_seconds", (("quantile", "0.5"), ("service", "api")))]
    assert median.kind == GAUGE and median.value == 0.012
    assert series[("prom_rpc_duration_seconds", (("quantile", "0.9"), ("service", "api")))].value == 0.034
    assert series[("prom_rpc_duration_seconds_count_per_second", (("service", "api"),))].kind == COUNTER


def test_an_openmetrics_exposition_is_parsed_with_the_openmetrics_parser(exporter):
    base, exposition = exporter
    exposition.requests.labels(path="/a").inc(2)
    exposition.temperature.set(4)
    series = _series(PrometheusCollector(_target(f"{base}/openmetrics")).collect())
    assert series[("prom_requests_per_second", (("path", "/a"),))].value == 2
    assert series[("prom_temperature_celsius", ())].value == 4


def test_the_allowlist_keeps_only_matching_families(exporter):
    base, exposition = exporter
    exposition.requests.labels(path="/a").inc()
    exposition.temperature.set(1)
    exposition.latency.labels(handler="home").observe(0.3)
    options = {"allowlist": ["temperature_*", "requests_total"]}
    result = PrometheusCollector(_target(f"{base}/metrics", options=options)).collect()
    assert {m.metric for m in result.measurements} == {"prom_temperature_celsius", "prom_requests_per_second"}


def test_a_scrape_is_capped_at_2000_series_with_a_note(exporter):
    base, exposition = exporter
    shards = Gauge("shard_items", "Items per shard.", ["shard"], registry=exposition.registry)
    for shard in range(2500):
        shards.labels(shard=str(shard)).set(shard)
    result = PrometheusCollector(_target(f"{base}/metrics")).collect()
    assert len(result.measurements) == MAX_SERIES == 2000
    assert any("2000" in note and "allowlist" in note for note in result.notes)


def test_basic_auth_from_the_url_is_sent_and_never_shown(exporter):
    base, _ = exporter
    host = base.removeprefix("http://")
    assert PrometheusCollector(_target(f"http://{AUTH_USER}:{AUTH_PASSWORD}@{host}/auth")).collect().measurements
    with pytest.raises(CollectorError, match="HTTP 401") as caught:
        PrometheusCollector(_target(f"http://{AUTH_USER}:wrong-pw@{host}/auth")).collect()
    assert "wrong-pw" not in str(caught.value)


def test_an_http_500_is_a_collector_error(exporter):
    base, _ = exporter
    with pytest.raises(CollectorError, match="answered HTTP 500"):
        PrometheusCollector(_target(f"{base}/error")).collect()


def test_a_page_that_is_not_metrics_is_a_collector_error(exporter):
    base, _ = exporter
    with pytest.raises(CollectorError, match="did not send Prometheus metrics"):
        PrometheusCollector(_target(f"{base}/garbage")).collect()


def test_a_slow_endpoint_times_out_after_the_target_timeout(exporter):
    base, _ = exporter
    started = time.monotonic()
    with pytest.raises(CollectorError, match="within 1 s"):
        PrometheusCollector(_target(f"{base}/slow", timeout=1)).collect()
    assert time.monotonic() - started < 2


def test_a_closed_port_is_a_collector_error():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(CollectorError, match=r"could not be reached.*refused"):
        PrometheusCollector(_target(f"http://127.0.0.1:{port}/metrics")).test_connection()


def test_connection_counts_families_and_samples(exporter):
    base, exposition = exporter
    exposition.temperature.set(3)
    assert PrometheusCollector(_target(f"{base}/metrics")).test_connection().startswith("Prometheus endpoint: ")


@pytest.mark.usefixtures("clean_samples")
def test_collect_target_stores_rates_from_the_second_scrape_and_none_across_a_restart(exporter):
    base, exposition = exporter
    target = _target(f"{base}/metrics", name="app-rates")
    target.save()
    exposition.requests.labels(path="/a").inc(1000)
    exposition.latency.labels(handler="home").observe(0.3)
    collect_target(target=target)
    assert stored_samples(target.id, "prom_requests_per_second") == []
    assert stored_samples(target.id, "prom_latency_seconds") == []

    exposition.requests.labels(path="/a").inc(50)
    for _ in range(10):
        exposition.latency.labels(handler="home").observe(0.3)
    collect_target(target=target)
    rates = stored_samples(target.id, "prom_requests_per_second")
    assert len(rates) == 1 and rates[0][0] == "rate" and rates[0][2] > 0
    quantiles = stored_samples(target.id, "prom_latency_seconds")
    assert {labels for _, labels, _ in quantiles} == {f"handler=home,quantile={q}" for q in ("0.5", "0.95", "0.99")}

    exposition.reset()  # the application restarted: counters and buckets start again from zero
    exposition.requests.labels(path="/a").inc(5)
    exposition.latency.labels(handler="home").observe(0.3)
    collect_target(target=target)
    assert len(stored_samples(target.id, "prom_requests_per_second")) == 1  # no rate across the restart
    assert len(stored_samples(target.id, "prom_latency_seconds")) == 3
    exposition.requests.labels(path="/a").inc(5)
    collect_target(target=target)
    rates = stored_samples(target.id, "prom_requests_per_second")
    assert len(rates) == 2 and all(value >= 0 for _, _, value in rates)
