"""Prometheus remote write receiver: a real Prometheus 2.42 writes to it; bad bodies store nothing."""

from __future__ import annotations

import json
import math
import struct
import time

import cramjam
import numpy as np
import pytest
from django.db import connection
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from core.roles import OPERATOR
from core.services import api_token_create
from monitoring.models import Series
from monitoring.protocols.remote_write import WriteRequest, write_request_encode
from tests.conftest import _make_user, free_port, prometheus_start

PATH = "/prometheus/api/v1/write"
STALE_NAN = struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000002))[0]


def _post(client, auth, body: bytes, *, content_type="application/x-protobuf", encoding="snappy"):
    return client.post(PATH, body, content_type=content_type, HTTP_CONTENT_ENCODING=encoding, **auth)


def _stored(metric: str) -> list[tuple[str, dict, float, float]]:
    """(kind, labels, unix seconds, value) of every stored sample of the metric, oldest first."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT s.kind, s.labels, extract(epoch FROM m.ts)::float8, m.value FROM monitoring_sample m "
            "JOIN monitoring_series s ON s.id = m.series_id WHERE s.metric = %s ORDER BY m.ts",
            [metric],
        )
        return [(kind, json.loads(labels), stamp, value) for kind, labels, stamp, value in cursor.fetchall()]


def _total_samples() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM monitoring_sample")
        return cursor.fetchone()[0]


def _ms(seconds_ago: float = 0) -> int:
    return int((time.time() - seconds_ago) * 1000)


@pytest.mark.usefixtures("clean_samples")
def test_samples_are_stored_as_sent_with_their_labels(anonymous_client, operator_auth):
    body = write_request_encode(
        [
            (
                {"__name__": "http_requests_total", "job": "shop", "instance": "a:9100", "code": "200"},
                [(5.0, _ms(20)), (8.0, _ms(10))],
            ),
            ({"__name__": "queue_depth", "job": "shop", "empty": ""}, [(3.5, _ms(10))]),
        ]
    )
    response = _post(anonymous_client, operator_auth, body)
    assert response.status_code == 204, response.content
    stored = _stored("http_requests_total")
    assert [(kind, labels, value) for kind, labels, _, value in stored] == [
        ("counter", {"job": "shop", "instance": "a:9100", "code": "200"}, 5.0),
        ("counter", {"job": "shop", "instance": "a:9100", "code": "200"}, 8.0),
    ]
    assert stored[1][2] - stored[0][2] == pytest.approx(10, abs=0.002)
    # An empty label value is an absent label, as in Prometheus; a name without a counter suffix is a gauge.
    assert Series.objects.get(metric="queue_depth").labels == {"job": "shop"}
    assert Series.objects.get(metric="queue_depth").kind == Series.Kind.GAUGE
    assert Series.objects.get(metric="queue_depth").target is None


@pytest.mark.usefixtures("clean_samples")
def test_stale_markers_and_nan_are_dropped_the_rest_kept(anonymous_client, operator_auth):
    body = write_request_encode(
        [
            ({"__name__": "temp", "room": "a"}, [(1.0, _ms(30)), (STALE_NAN, _ms(20)), (math.nan, _ms(10))]),
            ({"__name__": "gone", "room": "b"}, [(STALE_NAN, _ms(10))]),
        ]
    )
    response = _post(anonymous_client, operator_auth, body)
    assert response.status_code == 204, response.content
    assert [value for *_, value in _stored("temp")] == [1.0]
    assert not Series.objects.filter(metric="gone").exists()


@pytest.mark.parametrize(
    ("series", "reason"),
    [
        ([({"job": "x"}, [(1.0, 0)])], "__name__ is missing"),
        ([({"__name__": "9lives"}, [(1.0, 0)])], "Invalid metric name '9lives'"),
        ([({"__name__": "ok", "bad-name": "v"}, [(1.0, 0)])], "invalid label name 'bad-name'"),
    ],
    ids=["no-name", "bad-metric-name", "bad-label-name"],
)
@pytest.mark.usefixtures("clean_samples")
def test_a_bad_series_is_a_400_and_nothing_of_the_request_is_stored(anonymous_client, operator_auth, series, reason):
    good = ({"__name__": "fine_metric"}, [(1.0, _ms())])
    stamped = [(labels, [(value, _ms())]) for labels, [(value, _)] in series]
    response = _post(anonymous_client, operator_auth, write_request_encode([good, *stamped]))
    assert response.status_code == 400
    assert reason in response.json()["detail"]
    assert _total_samples() == 0


@pytest.mark.usefixtures("clean_samples")
def test_duplicate_label_names_are_a_400(anonymous_client, operator_auth):
    request = WriteRequest()
    series = request.timeseries.add()
    series.labels.add(name="__name__", value="dup")
    series.labels.add(name="job", value="a")
    series.labels.add(name="job", value="b")
    series.samples.add(value=1.0, timestamp=_ms())
    response = _post(anonymous_client, operator_auth, bytes(cramjam.snappy.compress_raw(request.SerializeToString())))
    assert response.status_code == 400
    assert response.json()["detail"] == "timeseries[0]: duplicate label name 'job'."


@pytest.mark.usefixtures("clean_samples")
def test_a_sample_out_of_the_retention_window_is_a_400_naming_it(anonymous_client, operator_auth):
    body = write_request_encode([({"__name__": "old", "job": "j"}, [(1.0, _ms()), (2.0, _ms(400 * 86_400))])])
    response = _post(anonymous_client, operator_auth, body)
    assert response.status_code == 400
    assert response.json()["detail"].startswith("old{job=j} sample 1: timestamp")
    assert _total_samples() == 0


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not snappy at all \xff\xff", "not valid snappy"),
        (bytes(cramjam.snappy.compress_raw(b"\x0a\x05garbage")), "not a protobuf WriteRequest"),
        (b"\x80\x80", "length header is cut short"),
    ],
    ids=["snappy", "protobuf", "snappy-header"],
)
@pytest.mark.usefixtures("clean_samples")
def test_an_undecodable_body_is_a_400_saying_why(anonymous_client, operator_auth, body, reason):
    response = _post(anonymous_client, operator_auth, body)
    assert response.status_code == 400
    assert reason in response.json()["detail"]


@pytest.mark.usefixtures("clean_samples")
def test_a_wrong_content_type_or_encoding_is_a_415(anonymous_client, operator_auth):
    body = write_request_encode([({"__name__": "x"}, [(1.0, _ms())])])
    assert _post(anonymous_client, operator_auth, body, content_type="application/json").status_code == 415
    response = _post(anonymous_client, operator_auth, body, encoding="gzip")
    assert response.status_code == 415
    assert response.json()["field"] == "Content-Encoding"


@pytest.mark.usefixtures("clean_samples")
def test_a_body_that_expands_past_the_limit_is_a_413(anonymous_client, operator_auth, settings):
    settings.PERFPILOT_MAX_INGEST_BYTES = 1000
    body = write_request_encode([({"__name__": "big", "n": str(n)}, [(1.0, _ms())]) for n in range(100)])
    assert len(body) < 1000
    response = _post(anonymous_client, operator_auth, body)
    assert response.status_code == 413
    assert "expands to" in response.json()["detail"]


@pytest.mark.usefixtures("clean_samples")
def test_writing_needs_an_operator_token(anonymous_client, viewer_auth, operator_user):
    body = write_request_encode([({"__name__": "x"}, [(1.0, _ms())])])
    assert _post(anonymous_client, {}, body).status_code == 401
    assert _post(anonymous_client, {"HTTP_AUTHORIZATION": "Bearer pp_wrong"}, body).status_code == 401
    assert _post(anonymous_client, viewer_auth, body).status_code == 403
    assert _total_samples() == 0


@pytest.mark.usefixtures("clean_samples")
def test_a_real_prometheus_remote_writes_what_it_scrapes(web_server_url, tmp_path):
    token = api_token_create(user=_make_user("remote-writer", OPERATOR), name="prometheus", via="command").raw
    registry = CollectorRegistry()
    requests = Counter("shop_requests", "Requests.", ["code"], registry=registry)
    requests.labels(code="200").inc(7)
    Gauge("shop_queue_depth", "Queue depth.", registry=registry).set(4.5)
    exporter_port = free_port()
    server, _thread = start_http_server(exporter_port, addr="127.0.0.1", registry=registry)
    (tmp_path / "token").write_text(token)
    process, _port = prometheus_start(
        tmp_path,
        f"""
global: {{scrape_interval: 1s, evaluation_interval: 1s}}
scrape_configs:
  - job_name: shop
    static_configs: [{{targets: ["127.0.0.1:{exporter_port}"]}}]
remote_write:
  - url: {web_server_url}{PATH}
    authorization: {{credentials_file: {tmp_path / "token"}}}
    queue_config: {{batch_send_deadline: 1s, min_backoff: 100ms, max_backoff: 1s}}
""",
    )
    try:
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline and not (_stored("shop_requests_total") and _stored("shop_queue_depth")):
            assert process.poll() is None, (tmp_path / "prometheus.log").read_text()[-2000:]
            time.sleep(0.5)
    finally:
        process.terminate()
        process.wait(timeout=20)
        server.shutdown()
    log = (tmp_path / "prometheus.log").read_text()
    counter = _stored("shop_requests_total")
    assert counter, f"nothing arrived from Prometheus; its log ends: {log[-2000:]}"
    kind, labels, stamp, value = counter[-1]
    assert kind == "counter" and value == 7.0
    assert labels == {"job": "shop", "instance": f"127.0.0.1:{exporter_port}", "code": "200"}
    assert abs(stamp - time.time()) < 60
    assert _stored("shop_queue_depth")[-1][3] == 4.5
    assert _stored("up")[-1][3] == 1.0  # Prometheus's own series about the scrape come too
    assert "non-recoverable error" not in log


def test_samples_decode_as_protobuf_decodes_them_on_the_columnar_path_and_off_it():
    from monitoring.protocols.remote_write import Sample, _samples

    values = [0.0, -0.0, 1.5, -2.25, 1e300, math.nan, STALE_NAN]
    stamps = [0, 1, 1_700_000_000_123, 2**41 + 5, 2**42 + 7, -5]
    raw = [Sample(value=v, timestamp=t).SerializeToString() for v in values for t in stamps]
    assert {len(r) for r in raw} >= {7, 16}  # both columnar layouts are exercised, and others
    decoded_stamps, decoded_values = _samples(raw)
    expected = [Sample.FromString(r) for r in raw]
    assert decoded_stamps.tolist() == [s.timestamp for s in expected]
    bits = np.array([s.value for s in expected]).view(np.uint64)
    assert decoded_values.view(np.uint64).tolist() == bits.tolist()  # NaN payloads (stale markers) too
