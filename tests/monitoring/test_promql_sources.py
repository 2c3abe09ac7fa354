"""PromQL sources: the external path of monitoring.promql.sources against a real Prometheus 2.42
(behind a local proxy that demands a bearer token, as Thanos, Mimir or an auth proxy would), and the
sources' API: roles, the write-only token, the outbound policy, audit."""

from __future__ import annotations

import http.server
import re
import threading
import time
import urllib.error
import urllib.request

import pytest
from django.test import override_settings

from core.models import AuditEvent
from monitoring.models import PromQLSource
from monitoring.promql.errors import PromQLError
from monitoring.promql.sources import SourceUnavailable, instant_vector, range_matrix
from tests.conftest import free_port

TOKEN = "s3cret-token"
API = "/api/v1/promql-sources"


class BearerProxy:
    """Forwards to Prometheus only requests with `Authorization: Bearer <TOKEN>`; 401 otherwise.
    Records the Authorization header of every request it got."""

    def __init__(self, upstream: str) -> None:
        self.upstream, self.seen = upstream, []
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                proxy.seen.append(self.headers.get("Authorization"))
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    self._answer(401, b'{"status":"error","error":"unauthorized"}')
                    return
                request = urllib.request.Request(
                    proxy.upstream + self.path, data=body, headers={"Content-Type": self.headers["Content-Type"]}
                )
                try:
                    with urllib.request.urlopen(request, timeout=10) as response:
                        self._answer(response.status, response.read())
                except urllib.error.HTTPError as exc:
                    self._answer(exc.code, exc.read())

            def _answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def proxied_prometheus(real_prometheus):
    """Prometheus holding `jobs_queued` (two instances, a sample every 15 s over the last 5 minutes),
    reached through the bearer-token proxy."""
    now_ms = int(time.time()) * 1000
    real_prometheus.write(
        [
            ({"__name__": "jobs_queued", "instance": name}, [(base + i, now_ms - (20 - i) * 15_000) for i in range(21)])
            for name, base in (("a", 100.0), ("b", 0.0))
        ]
    )
    proxy = BearerProxy(real_prometheus.url)
    yield proxy, now_ms
    proxy.stop()


def _source(url: str, *, token: str = TOKEN) -> PromQLSource:
    source = PromQLSource(name="prom", url=url, timeout_seconds=5)
    source.token = token
    source.save()
    return source


@pytest.mark.django_db
def test_an_external_source_answers_instant_and_range_queries_with_its_token(proxied_prometheus):
    proxy, now_ms = proxied_prometheus
    source = _source(proxy.url)

    elements = instant_vector("jobs_queued > 50", time_ms=now_ms, source=source)
    assert elements == [({"__name__": "jobs_queued", "instance": "a"}, 120.0)]
    assert instant_vector("scalar(sum(jobs_queued))", time_ms=now_ms, source=source) == [({}, 140.0)]
    ((labels, points),) = range_matrix(
        'jobs_queued{instance="b"}', start_ms=now_ms - 60_000, end_ms=now_ms, step_ms=30_000, source=source
    )
    assert labels == {"__name__": "jobs_queued", "instance": "b"}
    assert points == [(now_ms - 60_000, 16.0), (now_ms - 30_000, 18.0), (now_ms, 20.0)]
    assert set(proxy.seen) == {f"Bearer {TOKEN}"}

    source.token = "wrong"
    with pytest.raises(SourceUnavailable, match="HTTP 401"):
        instant_vector("jobs_queued", time_ms=now_ms, source=source)


@pytest.mark.django_db
def test_a_query_the_server_refuses_is_a_promql_error_in_the_servers_words(proxied_prometheus):
    proxy, now_ms = proxied_prometheus
    source = _source(proxy.url)
    with pytest.raises(PromQLError, match=r"prom: .*expected type range vector"):
        instant_vector("rate(jobs_queued)", time_ms=now_ms, source=source)
    with pytest.raises(PromQLError, match="instant vector or a scalar, not matrix"):
        instant_vector("jobs_queued[1m]", time_ms=now_ms, source=source)


@pytest.mark.django_db
def test_a_server_that_does_not_answer_is_source_unavailable():
    source = _source(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(SourceUnavailable, match=r"prom: .*refused"):
        instant_vector("up", time_ms=int(time.time() * 1000), source=source)


@pytest.mark.django_db
def test_a_server_that_is_not_a_prometheus_api_is_source_unavailable_not_an_error_of_ours():
    class NotPrometheus(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = b'{"status": "success", "data": ["not", "a", "result"]}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotPrometheus)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        source = _source(f"http://127.0.0.1:{server.server_address[1]}")
        with pytest.raises(SourceUnavailable, match="not a Prometheus query result"):
            instant_vector("up", time_ms=int(time.time() * 1000), source=source)
        with pytest.raises(SourceUnavailable, match="not a Prometheus query result"):
            range_matrix("up", start_ms=0, end_ms=60_000, step_ms=15_000, source=source)
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.django_db
@override_settings(OUTBOUND_DENY=["loopback"])
def test_the_outbound_policy_refuses_a_source_it_denies_before_connecting(proxied_prometheus):
    proxy, now_ms = proxied_prometheus
    source = _source(proxy.url)
    with pytest.raises(SourceUnavailable, match="PERFPILOT_OUTBOUND_DENY"):
        instant_vector("jobs_queued", time_ms=now_ms, source=source)
    assert proxy.seen == []


# --- the API --------------------------------------------------------------------------------------


def test_operators_manage_sources_viewers_read_them_and_the_token_is_never_shown(
    client, operator_auth, viewer_auth, db
):
    created = client.post(
        API, {"name": "thanos", "url": "http://127.0.0.1:9090", "token": TOKEN}, "application/json", **operator_auth
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["token_set"] is True and "token" not in body and TOKEN not in created.content.decode()
    source = PromQLSource.objects.get()
    assert source.token == TOKEN and TOKEN not in source.token_encrypted

    listed = client.get(API, **viewer_auth)
    assert listed.status_code == 200 and [s["name"] for s in listed.json()] == ["thanos"]
    assert TOKEN not in listed.content.decode()
    refused = client.post(API, {"name": "x", "url": "http://127.0.0.1:1"}, "application/json", **viewer_auth)
    assert refused.status_code == 403

    kept = client.patch(f"{API}/{source.id}", {"timeout_seconds": 3}, "application/json", **operator_auth)
    assert kept.status_code == 200 and kept.json()["token_set"] is True and kept.json()["timeout_seconds"] == 3
    removed = client.patch(f"{API}/{source.id}", {"token": ""}, "application/json", **operator_auth)
    assert removed.json()["token_set"] is False

    assert client.delete(f"{API}/{source.id}", **viewer_auth).status_code == 403
    assert client.delete(f"{API}/{source.id}", **operator_auth).status_code == 204
    actions = list(AuditEvent.objects.order_by("id").values_list("action", flat=True))
    assert actions[-4:] == [
        "promql_source.create",
        "promql_source.update",
        "promql_source.update",
        "promql_source.delete",
    ]
    assert not any(TOKEN in str(detail) for detail in AuditEvent.objects.values_list("detail", flat=True))


@pytest.mark.parametrize(
    ("url", "status", "why"),
    [
        ("http://169.254.169.254/", 422, "cloud metadata"),
        ("ftp://prometheus:9090", 400, "http"),
        ("http://user:pw@prometheus:9090", 400, "token"),
        ("http://prometheus:9090/?x=1", 400, "no \\?"),
    ],
)
def test_a_source_url_is_checked_at_save_naming_the_field(client, operator_auth, url, status, why):
    answer = client.post(API, {"name": "p", "url": url}, "application/json", **operator_auth)
    assert answer.status_code == status, answer.content
    body = answer.json()
    assert body["field"] == "url" and re.search(why, body["detail"]), body


@pytest.mark.django_db
def test_a_source_that_rules_read_cannot_be_deleted(client, operator_auth):
    from alerts.models import AlertRule

    source = _source("http://127.0.0.1:9090")
    AlertRule.objects.create(name="Queue", kind="promql", expression="up == 0", promql_source=source)
    answer = client.delete(f"{API}/{source.id}", **operator_auth)
    assert answer.status_code == 409 and "Queue" in answer.json()["detail"]
    assert PromQLSource.objects.filter(pk=source.pk).exists()


@pytest.mark.django_db
def test_testing_a_source_queries_it_with_its_token(client, operator_auth, proxied_prometheus):
    proxy, _ = proxied_prometheus
    source = _source(proxy.url)
    answer = client.post(f"{API}/{source.id}/test", **operator_auth)
    assert answer.status_code == 200 and answer.json()["ok"] is True, answer.content
    source.token = "wrong"
    source.save()
    failed = client.post(f"{API}/{source.id}/test", **operator_auth).json()
    assert failed["ok"] is False and "401" in failed["detail"]
