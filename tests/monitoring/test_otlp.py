"""OTLP metrics receiver: the OpenTelemetry SDK's OTLP/HTTP exporter pushes to it; JSON bodies; deltas."""

from __future__ import annotations

import gzip
import http.client
import json
import math
import threading
import time
from urllib.parse import urlsplit

import pytest
from django.db import connection
from google.rpc import status_pb2
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics import Counter, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

from core.roles import OPERATOR
from core.services import api_token_create
from monitoring.models import Series
from tests.conftest import _make_user

PATH = "/otlp/v1/metrics"
SERVICE = {"service.name": "checkout", "service.namespace": "shop", "service.instance.id": "i-1"}
JOB = {"job": "shop/checkout", "instance": "i-1"}


def _stored(metric: str) -> list[tuple[str, dict, float]]:
    """(kind, labels, value) of every stored sample of the metric, oldest first."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT s.kind, s.labels, m.value FROM monitoring_sample m "
            "JOIN monitoring_series s ON s.id = m.series_id WHERE s.metric = %s ORDER BY m.ts, s.labels_key",
            [metric],
        )
        return [(kind, json.loads(labels), value) for kind, labels, value in cursor.fetchall()]


def _meter_provider(url: str, token: str, **exporter_options) -> MeterProvider:
    exporter = OTLPMetricExporter(
        endpoint=f"{url}{PATH}", headers={"Authorization": f"Bearer {token}"}, **exporter_options
    )
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)  # exports on flush only
    return MeterProvider(resource=Resource.create(SERVICE), metric_readers=[reader])


@pytest.fixture
def otlp_token(transactional_db) -> str:
    return api_token_create(user=_make_user("otlp-pusher", OPERATOR), name="otel", via="command").raw


@pytest.mark.usefixtures("clean_samples")
def test_the_sdk_exporter_pushes_gauges_sums_and_histograms_named_as_prometheus_names_them(web_server_url, otlp_token):
    provider = _meter_provider(web_server_url, otlp_token)
    meter = provider.get_meter("shop")
    meter.create_counter("http.server.requests", unit="{request}").add(3, {"http.route": "/pay"})
    meter.create_up_down_counter("queue.size", unit="{item}").add(-2)
    meter.create_gauge("cpu.utilization", unit="1").set(0.25)
    duration = meter.create_histogram("http.server.duration", unit="ms", explicit_bucket_boundaries_advisory=[5, 50])
    for value in (1, 20, 20, 900):
        duration.record(value)
    provider.shutdown()  # exports once, then stops

    assert _stored("http_server_requests_total") == [("counter", {**JOB, "http_route": "/pay"}, 3.0)]
    assert _stored("queue_size") == [("gauge", JOB, -2.0)]
    assert _stored("cpu_utilization_ratio") == [("gauge", JOB, 0.25)]
    buckets = {labels["le"]: value for _, labels, value in _stored("http_server_duration_milliseconds_bucket")}
    assert buckets == {"5": 1.0, "50": 3.0, "+Inf": 4.0}
    assert _stored("http_server_duration_milliseconds_sum") == [("counter", JOB, 941.0)]
    assert _stored("http_server_duration_milliseconds_count") == [("counter", JOB, 4.0)]


@pytest.mark.usefixtures("clean_samples")
def test_delta_sums_from_the_sdk_are_stored_as_their_running_total(web_server_url, otlp_token):
    provider = _meter_provider(
        web_server_url, otlp_token, preferred_temporality={Counter: AggregationTemporality.DELTA}
    )
    orders = provider.get_meter("shop").create_counter("orders")
    for amount in (3, 4, 5):
        orders.add(amount)
        assert provider.force_flush(timeout_millis=20_000)
        time.sleep(0.01)  # distinct timestamps
    provider.shutdown()
    assert [value for *_, value in _stored("orders_total")] == [3.0, 7.0, 12.0]
    assert Series.objects.get(metric="orders_total").kind == Series.Kind.COUNTER


def _json_request(metrics: list[dict]) -> dict:
    return {
        "resourceMetrics": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "billing"}}]},
                "scopeMetrics": [{"scope": {"name": "test"}, "metrics": metrics}],
            }
        ]
    }


def _point(value, **extra) -> dict:
    key = "asInt" if isinstance(value, str) else "asDouble"
    return {"timeUnixNano": str(time.time_ns()), key: value, **extra}


@pytest.mark.usefixtures("clean_samples")
def test_a_json_body_is_taken_and_answered_in_json(anonymous_client, operator_auth):
    body = _json_request(
        [
            {
                "name": "jobs.waiting",
                "gauge": {"dataPoints": [_point("5", attributes=[{"key": "queue", "value": {"stringValue": "mail"}}])]},
            },
            # A non-monotonic delta sum: added to the stored total, kept a gauge.
            {
                "name": "balance",
                "unit": "By",
                "sum": {"aggregationTemporality": 1, "isMonotonic": False, "dataPoints": [_point(10.0)]},
            },
        ]
    )
    response = anonymous_client.post(PATH, json.dumps(body), content_type="application/json", **operator_auth)
    assert response.status_code == 200, response.content
    assert response.json() == {}
    assert _stored("jobs_waiting") == [("gauge", {"job": "billing", "queue": "mail"}, 5.0)]
    body["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][1]["sum"]["dataPoints"] = [_point(-4.0)]
    anonymous_client.post(PATH, json.dumps(body), content_type="application/json", **operator_auth)
    assert [value for *_, value in _stored("balance_bytes")] == [10.0, 6.0]


@pytest.mark.usefixtures("clean_samples")
def test_exponential_histograms_are_rejected_as_a_partial_success(anonymous_client, operator_auth):
    body = _json_request(
        [
            {
                "name": "latency",
                "exponentialHistogram": {
                    "aggregationTemporality": 2,
                    "dataPoints": [{"timeUnixNano": str(time.time_ns()), "count": "1", "scale": 1}],
                },
            },
            {"name": "temperature", "gauge": {"dataPoints": [_point(21.5)]}},
        ]
    )
    response = anonymous_client.post(PATH, json.dumps(body), content_type="application/json", **operator_auth)
    assert response.status_code == 200
    assert response.json() == {
        "partialSuccess": {
            "rejectedDataPoints": "1",
            "errorMessage": "Exponential histograms are not supported; rejected: latency.",
        }
    }
    assert _stored("temperature") == [("gauge", {"job": "billing"}, 21.5)]


@pytest.mark.usefixtures("clean_samples")
def test_a_gzip_protobuf_body_is_taken(anonymous_client, operator_auth):
    from google.protobuf import json_format
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

    request = json_format.ParseDict(
        _json_request([{"name": "disk.free", "unit": "By", "gauge": {"dataPoints": [_point(1e9)]}}]),
        ExportMetricsServiceRequest(),
    )
    response = anonymous_client.post(
        PATH,
        gzip.compress(request.SerializeToString()),
        content_type="application/x-protobuf",
        HTTP_CONTENT_ENCODING="gzip",
        **operator_auth,
    )
    assert response.status_code == 200
    assert response["Content-Type"] == "application/x-protobuf"
    assert _stored("disk_free_bytes") == [("gauge", {"job": "billing"}, 1e9)]


@pytest.mark.usefixtures("clean_samples")
def test_a_bad_body_is_a_400_status_in_the_request_format_and_nothing_is_stored(anonymous_client, operator_auth):
    response = anonymous_client.post(PATH, b"\xff\xff\xff", content_type="application/x-protobuf", **operator_auth)
    assert response.status_code == 400
    status = status_pb2.Status.FromString(response.content)
    assert status.code == 3 and "not an OTLP ExportMetricsServiceRequest" in status.message
    body = _json_request(
        [
            {"name": "fine", "gauge": {"dataPoints": [_point(1.0)]}},
            {"name": "stale", "gauge": {"dataPoints": [_point(1.0, timeUnixNano="1000")]}},
        ]
    )
    response = anonymous_client.post(PATH, json.dumps(body), content_type="application/json", **operator_auth)
    assert response.status_code == 400
    assert response.json()["message"].startswith("stale{job=billing} sample 0: timestamp")
    assert not _stored("fine")


@pytest.mark.usefixtures("clean_samples")
def test_the_receiver_needs_an_operator_token_and_a_known_content_type(anonymous_client, operator_auth, viewer_auth):
    body = json.dumps(_json_request([{"name": "x", "gauge": {"dataPoints": [_point(1.0)]}}]))
    assert anonymous_client.post(PATH, body, content_type="application/json").status_code == 401
    assert anonymous_client.post(PATH, body, content_type="application/json", **viewer_auth).status_code == 403
    assert anonymous_client.post(PATH, body, content_type="text/plain", **operator_auth).status_code == 415
    assert not _stored("x")


@pytest.mark.parametrize(
    ("name", "unit", "kind", "expected"),
    [
        ("http.server.duration", "ms", "histogram", "http_server_duration_milliseconds"),
        ("http.server.requests", "{request}", "monotonic", "http_server_requests_total"),
        ("requests_total", "", "monotonic", "requests_total"),
        ("system.memory.usage", "By", "sum", "system_memory_usage_bytes"),
        ("network.io", "By/s", "gauge", "network_io_bytes_per_second"),
        ("cpu.utilization", "1", "gauge", "cpu_utilization_ratio"),
        ("process.runtime.uptime_seconds", "s", "gauge", "process_runtime_uptime_seconds"),
        ("2xx.responses", "", "gauge", "_2xx_responses"),
    ],
)
def test_metric_names_follow_prometheus_otlp_translation(name, unit, kind, expected):
    from monitoring.protocols.otlp import metric_name

    assert metric_name(name, unit, monotonic_sum=kind == "monotonic", gauge=kind == "gauge") == expected


@pytest.mark.parametrize(
    ("bound", "label"),
    [
        (0.005, "0.005"),
        (5.0, "5"),
        (2.5, "2.5"),
        (100_000.0, "100000"),
        (1e6, "1e+06"),
        (1e-5, "1e-05"),
        (-3.0, "-3"),
        (0.0, "0"),
        (math.inf, "+Inf"),
    ],
)
def test_le_and_quantile_labels_are_written_as_go_writes_floats(bound, label):
    from monitoring.protocols.otlp import go_float

    assert go_float(bound) == label


@pytest.mark.usefixtures("clean_samples")
def test_concurrent_delta_requests_add_up_under_the_series_lock(web_server_url, otlp_token):
    """Two clients adding deltas to one series at once: every increment ends up in the total."""

    def body(stamp_ns: int) -> bytes:
        metric = {
            "name": "hits",
            "sum": {
                "aggregationTemporality": 1,
                "isMonotonic": True,
                "dataPoints": [{"timeUnixNano": str(stamp_ns), "asInt": "1"}],
            },
        }
        return json.dumps(_json_request([metric])).encode()

    def client(offset: int, errors: list) -> None:
        parts = urlsplit(web_server_url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        for n in range(10):
            headers = {"Authorization": f"Bearer {otlp_token}", "Content-Type": "application/json"}
            conn.request("POST", PATH, body=body(time.time_ns() + offset + n), headers=headers)
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                errors.append(response.status)

    errors: list = []
    threads = [threading.Thread(target=client, args=(offset, errors)) for offset in (0, 500)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    totals = sorted(value for *_, value in _stored("hits_total"))
    assert totals == [float(n) for n in range(1, 21)]
