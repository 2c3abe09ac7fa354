"""The outbound policy (core/outbound.py) against real local servers: what is refused, that the connection
goes to the checked address, that redirects to refused addresses are not followed, and that a receiver's
body never reaches a decision, a delivery or an API answer."""

from __future__ import annotations

import socket
import threading
import urllib.error
import urllib.request
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg
import pytest
import redis
from django.core.checks import run_checks
from django.test import override_settings

from core import outbound
from core.outbound import OutboundRefused

SECRET_BODY = "SECRET-BODY-do-not-show-4f2a"


class _Server:
    """Answers every request with `status`, `body` and, when set, a Location header; counts requests."""

    def __init__(self) -> None:
        self.status = 200
        self.body = b'{"replicas": 3}'
        self.location: str | None = None
        self.hits = 0


@contextmanager
def http_server():
    state = _Server()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            return

        def _answer(self):
            state.hits += 1
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            self.send_response(state.status)
            if state.location:
                self.send_header("Location", state.location)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(state.body)))
            self.end_headers()
            self.wfile.write(state.body)

        do_GET = do_POST = _answer

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


# --- the rules --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    ["169.254.169.254", "169.254.1.1", "fe80::1", "fd00:ec2::254", "100.100.100.200", "::ffff:169.254.169.254"],
)
def test_link_local_and_metadata_addresses_are_always_refused(address):
    with override_settings(OUTBOUND_ALLOW=["all"]), pytest.raises(OutboundRefused, match="never connects"):
        outbound.check_ip(address)


@pytest.mark.parametrize("name", ["metadata.google.internal", "METADATA.google.internal.", "instance-data"])
def test_metadata_names_are_refused_whatever_they_resolve_to(name):
    with pytest.raises(OutboundRefused, match="metadata"):
        outbound.resolve(name, 80)


def test_private_loopback_and_unix_are_allowed_by_default():
    for address in ("127.0.0.1", "::1", "10.1.2.3", "192.168.0.10", "172.16.5.5"):
        assert outbound.check_ip(address) == address
    outbound.check_unix("/var/run/docker.sock")


@override_settings(OUTBOUND_DENY=["private", "loopback", "unix"])
def test_deny_refuses_private_loopback_and_unix_sockets():
    for address in ("127.0.0.1", "10.1.2.3", "fc00::1"):
        with pytest.raises(OutboundRefused, match="PERFPILOT_OUTBOUND_DENY"):
            outbound.check_ip(address)
    with pytest.raises(OutboundRefused, match="Unix socket"):
        outbound.check_unix("/var/run/docker.sock")
    assert outbound.check_ip("8.8.8.8") == "8.8.8.8"


@override_settings(OUTBOUND_DENY=["all"], OUTBOUND_ALLOW=["10.1.0.0/16"])
def test_allow_makes_exceptions_to_deny():
    assert outbound.check_ip("10.1.200.3") == "10.1.200.3"
    for address in ("10.2.0.1", "8.8.8.8", "::1"):
        with pytest.raises(OutboundRefused):
            outbound.check_ip(address)
    with pytest.raises(OutboundRefused):
        outbound.check_unix("/tmp/x.sock")


def test_a_name_is_refused_when_any_of_its_addresses_is(monkeypatch):
    def two_addresses(host, port, *args, **kwargs):
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.5", port)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.169.254", port)),
        ]

    monkeypatch.setattr(socket, "getaddrinfo", two_addresses)
    with pytest.raises(OutboundRefused, match=r"169\.254\.169\.254"):
        outbound.resolve("rebinding.example", 80)


@override_settings(OUTBOUND_DENY=["10.0.0.0/33"])
def test_a_bad_cidr_is_a_system_check_error():
    errors = [e for e in run_checks() if e.id == "config.E005"]
    assert errors and "PERFPILOT_OUTBOUND_DENY" in errors[0].msg


def test_the_connection_goes_to_the_checked_address(monkeypatch):
    """One lookup; the socket connects to what that lookup answered (no second lookup to rebind)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    answers = iter(["127.0.0.1", "169.254.169.254"])
    real = socket.getaddrinfo

    def rebinding(host, port_, *args, **kwargs):
        if host == "rebind.test":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), port_))]
        return real(host, port_, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    try:
        with outbound.create_connection(("rebind.test", port), 2) as sock:
            assert sock.getpeername() == ("127.0.0.1", port)
        with pytest.raises(OutboundRefused):
            outbound.create_connection(("rebind.test", port), 2)
    finally:
        listener.close()


# --- HTTP ---------------------------------------------------------------------------------------------


def test_http_redirect_to_metadata_is_not_followed():
    with http_server() as server:
        server.status, server.location = 302, "http://169.254.169.254/latest/meta-data/"
        with pytest.raises(urllib.error.HTTPError) as answer:
            outbound.http_open(server.url, timeout=2)
        answer.value.close()
        assert answer.value.code == 302
        with pytest.raises(OutboundRefused, match=r"169\.254\.169\.254"):
            outbound.http_open(server.url, timeout=2, follow_redirects=True)
        assert server.hits == 2


def test_http_redirect_to_another_scheme_is_refused():
    with http_server() as server:
        server.status, server.location = 302, "ftp://169.254.169.254/x"
        with pytest.raises(OutboundRefused, match="ftp"):
            outbound.http_open(server.url, timeout=2, follow_redirects=True)


def test_http_status_text_is_the_standard_phrase_not_the_servers():
    assert outbound.http_status_text(500) == "500 Internal Server Error"
    assert outbound.http_status_text(599) == "599"


# --- every kind of connection -------------------------------------------------------------------------


@override_settings(OUTBOUND_DENY=["loopback"])
def test_postgres_collector_and_optimizer_refuse_a_denied_host(db):
    from monitoring.collectors.base import CollectorError, collector_for
    from monitoring.models import Target
    from optimizer.services.sessions import open_session
    from optimizer.tuners.base import TunerError

    target = Target(name="pg", kind=Target.Kind.POSTGRES, timeout_seconds=2)
    target.url = "postgresql://u:p@127.0.0.1:5432/postgres"
    with pytest.raises(CollectorError, match="PERFPILOT_OUTBOUND_DENY"):
        collector_for(target).test_connection()
    with pytest.raises(TunerError, match="PERFPILOT_OUTBOUND_DENY"), open_session(target=target, dry_run=True):
        pass


def test_postgres_connects_to_the_pinned_hostaddr():
    params = outbound.psycopg_params({"host": "localhost", "port": 5432, "dbname": "postgres", "user": "postgres"})
    assert params["hostaddr"] in ("127.0.0.1", "::1")
    with psycopg.connect(connect_timeout=3, **params) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    with pytest.raises(OutboundRefused):
        outbound.psycopg_params({"host": "localhost", "hostaddr": "169.254.169.254"})


@override_settings(OUTBOUND_DENY=["loopback"])
def test_redis_and_celery_collectors_refuse_a_denied_host(db):
    from monitoring.collectors.base import CollectorError, collector_for
    from monitoring.models import Target

    for kind in (Target.Kind.REDIS, Target.Kind.CELERY):
        target = Target(name=kind, kind=kind, timeout_seconds=2, pk=None)
        target.url = "redis://127.0.0.1:6379/0"
        with pytest.raises(CollectorError, match="PERFPILOT_OUTBOUND_DENY"):
            collector_for(target).test_connection()


def test_redis_client_connects_through_the_policy():
    client = outbound.redis_checked(redis.Redis.from_url("redis://127.0.0.1:6379/0", socket_timeout=2))
    assert client.ping()
    with override_settings(OUTBOUND_DENY=["127.0.0.1/32"]):
        fresh = outbound.redis_checked(redis.Redis.from_url("redis://127.0.0.1:6379/0", socket_timeout=2))
        with pytest.raises(redis.ConnectionError, match="PERFPILOT_OUTBOUND_DENY"):
            fresh.ping()


@override_settings(OUTBOUND_DENY=["unix"])
def test_docker_executor_refuses_a_denied_unix_socket():
    from core.errors import InvalidInput
    from scaling.executors.base import ExecutorContext, ExecutorError, executor_class, executor_for

    cls = executor_class("docker")
    with pytest.raises(InvalidInput) as saved:
        cls.validate_config({"base_url": "unix:///var/run/docker.sock", "service": "web"})
    assert saved.value.field == "executor_config.base_url"
    executor = executor_for(
        "docker", {"base_url": "unix:///var/run/docker.sock", "service": "web"}, context=ExecutorContext("web")
    )
    with pytest.raises(ExecutorError, match="Unix socket"):
        executor.current()


def test_kubernetes_executor_refuses_metadata_at_save_and_at_connect():
    from core.errors import InvalidInput
    from scaling.executors.base import ExecutorContext, ExecutorError, executor_class, executor_for

    with pytest.raises(InvalidInput) as saved:
        executor_class("kubernetes").validate_config({"api_url": "http://169.254.169.254", "name": "web"})
    assert saved.value.field == "executor_config.api_url"
    executor = executor_for(
        "kubernetes", {"api_url": "http://169.254.169.254:80", "name": "web"}, context=ExecutorContext("web")
    )
    with pytest.raises(ExecutorError, match="refused"):
        executor.current()


def test_webhook_executor_never_keeps_the_body_and_does_not_follow_redirects():
    from scaling.executors.base import ExecutorContext, ExecutorError, executor_for

    with http_server() as server:
        server.status, server.body = 500, SECRET_BODY.encode()
        executor = executor_for(
            "webhook", {"url": server.url, "status_url": server.url}, context=ExecutorContext("web")
        )
        with pytest.raises(ExecutorError) as failed:
            executor.current()
        assert str(failed.value) == "The webhook answered 500 Internal Server Error."
        server.status, server.location = 302, "http://169.254.169.254/latest/meta-data/"
        with pytest.raises(ExecutorError, match="redirects are not followed"):
            executor.scale_to(3)
        assert server.hits == 2


def test_alert_delivery_error_holds_no_body_and_redirects_are_not_followed():
    from alerts.transports.base import TransportError, post_json

    with http_server() as server:
        server.status, server.body = 500, SECRET_BODY.encode()
        with pytest.raises(TransportError) as failed:
            post_json(url=server.url, payload={}, timeout=2)
        assert SECRET_BODY not in str(failed.value) and SECRET_BODY not in failed.value.response_head
        server.body = b"invalid_token " + SECRET_BODY.encode()
        with pytest.raises(TransportError) as revoked:
            post_json(url=server.url, payload={}, timeout=2)
        assert revoked.value.disable and "invalid_token" in str(revoked.value)
        assert SECRET_BODY not in str(revoked.value)
        server.status, server.body, server.location = 301, SECRET_BODY.encode(), "http://169.254.169.254/"
        with pytest.raises(TransportError, match="redirects are not followed") as moved:
            post_json(url=server.url, payload={}, timeout=2)
        assert moved.value.permanent
        assert server.hits == 3


def test_prometheus_test_connection_quotes_no_body(db):
    from monitoring.collectors.base import CollectorError, collector_for
    from monitoring.models import Target

    with http_server() as server:
        target = Target(name="prom", kind=Target.Kind.PROMETHEUS, timeout_seconds=2)
        target.url = server.url
        server.status, server.body = 200, f"{SECRET_BODY} not metrics {{".encode()
        with pytest.raises(CollectorError) as bad:
            collector_for(target).test_connection()
        assert SECRET_BODY not in str(bad.value)
        server.status, server.location = 302, "http://169.254.169.254/metrics"
        with pytest.raises(CollectorError, match=r"169\.254\.169\.254"):
            collector_for(target).test_connection()


# --- save time: a refused address is a 422 naming the field ------------------------------------------


def test_saving_a_target_channel_or_executor_at_a_refused_address_is_a_422(operator_auth):
    from django.test import Client

    client = Client()
    cases = [
        (
            "/api/v1/targets",
            {"name": "meta", "kind": "prometheus", "url": "http://169.254.169.254/metrics"},
            "url",
        ),
        ("/api/v1/targets", {"name": "meta-pg", "kind": "postgres", "url": "postgresql://u@[fe80::1]/x"}, "url"),
        (
            "/api/v1/performance/alerts/channels",
            {"name": "meta", "kind": "webhook", "url": "http://169.254.169.254/"},
            "url",
        ),
        (
            "/api/v1/performance/scaling/services",
            {
                "name": "meta",
                "executor_kind": "webhook",
                "executor_config": {"url": "http://100.100.100.200/"},
                "min_replicas": 1,
                "max_replicas": 2,
            },
            "executor_config.url",
        ),
    ]
    for path, body, field in cases:
        response = client.post(path, body, content_type="application/json", **operator_auth)
        assert response.status_code == 422, (path, response.content)
        assert field in response.content.decode(), (path, response.content)


# --- end to end: what a viewer can read, and what a viewer can trigger ---------------------------------


def load_series(metric: str, value: float) -> int:
    from datetime import timedelta

    from django.utils import timezone

    from monitoring.storage import SeriesSpec, samples_write, series_resolve

    (series_id,) = series_resolve(target_id=None, specs=[SeriesSpec(metric, {})])
    samples_write([(series_id, timezone.now() - timedelta(seconds=1), value)])
    return series_id


def webhook_service(name: str, url: str, *, series_id: int, target: float = 50, status_url: str = ""):
    from scaling.services.crud import ServiceInput, rule_upsert, service_create

    config = {"url": url, "timeout_seconds": 1, **({"status_url": status_url} if status_url else {})}
    service = service_create(
        data=ServiceInput(
            name=name, executor_kind="webhook", executor_config=config, min_replicas=1, max_replicas=10, dry_run=False
        ),
        actor=None,
        via="system",
    )
    rule_upsert(
        service=service,
        name="load",
        data={"source": "series", "series_id": series_id, "target_value": target},
        actor=None,
        via="system",
    )
    return service


def test_a_webhook_status_url_answering_500_with_a_body_leaves_no_body_in_decisions(
    clean_samples, anonymous_client, operator_auth, viewer_auth
):
    from scaling.models import ScalingDecision

    with http_server() as server:
        server.status, server.body = 500, SECRET_BODY.encode()
        service = webhook_service(
            "leaky", server.url, series_id=load_series("rps", 120.0), status_url=f"{server.url}/status"
        )
        evaluated = anonymous_client.post(
            "/api/v1/performance/scaling/evaluate", {"service": "leaky"}, "application/json", **operator_auth
        )
        assert evaluated.status_code == 200, evaluated.content
        assert server.hits >= 1  # the status URL was asked
    decision = ScalingDecision.objects.filter(service=service).latest("id")
    assert "500 Internal Server Error" in decision.error
    stored = " ".join(str(value) for value in ScalingDecision.objects.filter(service=service).values().first().values())
    assert SECRET_BODY not in stored
    listed = anonymous_client.get("/api/v1/performance/scaling/decisions?service=leaky", **viewer_auth)
    assert listed.status_code == 200 and listed.json()
    assert SECRET_BODY not in listed.content.decode() and SECRET_BODY not in evaluated.content.decode()


def test_a_viewer_gets_403_on_every_call_that_makes_the_server_connect_out(
    clean_samples, anonymous_client, viewer_auth
):
    from alerts.services.manage import ChannelInput, channel_create
    from monitoring.models import Target
    from monitoring.services.targets import TargetInput, target_create
    from optimizer.models import Recommendation

    with http_server() as server:
        target = target_create(
            data=TargetInput(name="t", kind="postgres", url="postgresql://u:p@127.0.0.1:5432/postgres"),
            actor=None,
            via="system",
        )
        channel = channel_create(data=ChannelInput(name="c", kind="webhook", url=server.url), actor=None, via="system")
        webhook_service("svc", server.url, series_id=load_series("rps2", 1.0))
        advice = Recommendation.objects.create(
            tuner="indexes", target=target, fingerprint="x", category="missing_index", title="x", statement="SELECT 1"
        )
        calls = [
            (f"/api/v1/targets/{target.id}/test", {}),
            (f"/api/v1/performance/alerts/channels/{channel.id}/test", {}),
            ("/api/v1/performance/scaling/evaluate", {"service": "svc"}),
            ("/api/v1/performance/scaling/execute", {"service": "svc", "replicas": 2}),
            ("/api/v1/performance/benchmark", {"target": target.id}),
            ("/api/v1/performance/optimization/execute", {"targets": [target.id], "tuners": ["vacuum"]}),
            ("/api/v1/performance/database/optimize", {"targets": [target.id]}),
            (f"/api/v1/performance/recommendations/{advice.id}/apply", {}),
        ]
        for path, body in calls:
            response = anonymous_client.post(path, body, "application/json", **viewer_auth)
            assert response.status_code == 403, (path, response.status_code, response.content[:200])
        assert server.hits == 0
        assert Target.objects.get(pk=target.pk).last_error == ""
