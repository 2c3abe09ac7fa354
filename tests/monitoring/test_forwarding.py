"""Remote-write forwarding: a local receiver that fails for a while, refuses a batch, or is left hanging by a
killed forwarder; nothing stored is lost. One test sends to a real Prometheus 2.42."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cramjam
import pytest
from django.utils import timezone

from core.locks import lock_holder
from monitoring.models import ForwardingState, ForwardOutbox, Target
from monitoring.protocols.remote_write import WriteRequest
from monitoring.selectors.forwarding import forwarding_status
from monitoring.services.forwarding import LOCK_KEY, forwarding_run
from monitoring.storage import SeriesSpec, samples_write, series_resolve
from tests.conftest import ROOT, _spawn, free_port

pytestmark = pytest.mark.usefixtures("clean_samples")


class Receiver:
    """A remote-write endpoint on loopback: answers from `script` (status, headers) until it runs out, then 204;
    every request it took is decoded into `requests` (a list of (status answered, {labels: [(ms, value)]}))."""

    def __init__(self) -> None:
        self.script: list[tuple[int, dict[str, str]]] = []
        self.requests: list[tuple[int | None, dict[tuple, list[tuple[int, float]]]]] = []
        self.headers: list[dict[str, str]] = []
        self.hold = threading.Event()  # set: answer nothing until released
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = WriteRequest.FromString(bytes(cramjam.snappy.decompress_raw(body)))
                receiver.headers.append(dict(self.headers))
                decoded = {
                    tuple(sorted((label.name, label.value) for label in ts.labels)): [
                        (sample.timestamp, sample.value) for sample in ts.samples
                    ]
                    for ts in request.timeseries
                }
                if receiver.hold.is_set():
                    receiver.requests.append((None, decoded))
                    receiver.release.wait(30)
                    return
                status, headers = receiver.script.pop(0) if receiver.script else (204, {})
                receiver.requests.append((status, decoded))
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                message = b"out of order sample" if status == 400 else b""
                self.send_header("Content-Length", str(len(message)))
                self.end_headers()
                self.wfile.write(message)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/api/v1/write"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def arrived(self, *, statuses: tuple = (204,)) -> dict[tuple, list[tuple[int, float]]]:
        """Every sample per series of the requests answered with one of `statuses`, in the order they arrived."""
        series: dict[tuple, list[tuple[int, float]]] = {}
        for status, request in self.requests:
            if status not in statuses:
                continue
            for labels, samples in request.items():
                series.setdefault(labels, []).extend(samples)
        return series


@pytest.fixture
def receiver(settings):
    receiver = Receiver()
    settings.FORWARD_REMOTE_WRITE_URL = receiver.url
    settings.FORWARD_REMOTE_WRITE_TOKEN = "s3cret"
    settings.FORWARD_RETRY_BASE_SECONDS = 2.0
    yield receiver
    receiver.release.set()
    receiver.server.shutdown()
    receiver.server.server_close()


def _store(count: int = 30) -> dict[tuple, list[tuple[int, float]]]:
    """Three writes of `count` samples to a target's series and a remote-written one; what they should arrive as."""
    target = Target.objects.create(name="db-1", kind=Target.Kind.POSTGRES)
    collected = series_resolve(target_id=target.id, specs=[SeriesSpec("postgres.connections", {"db": "shop"})])[0]
    pushed = series_resolve(target_id=None, specs=[SeriesSpec("queue_depth", {"job": "shop"})])[0]
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    expected: dict[tuple, list[tuple[int, float]]] = {
        (("__name__", "postgres_connections"), ("db", "shop"), ("instance", "db-1"), ("job", "postgres")): [],
        (("__name__", "queue_depth"), ("job", "shop")): [],
    }
    keys = list(expected)
    for write in range(3):
        rows = []
        for i in range(write * count, (write + 1) * count):
            at = start + timedelta(seconds=10 * i)
            rows += [(collected, at, float(i)), (pushed, at, i / 2)]
            expected[keys[0]].append((int(at.timestamp() * 1000), float(i)))
            expected[keys[1]].append((int(at.timestamp() * 1000), i / 2))
        samples_write(rows)
    return expected


def test_forwarding_survives_500s_and_429s_and_delivers_every_sample_once_in_order(receiver, settings):
    settings.FORWARD_BATCH_SAMPLES = 50
    expected = _store()
    assert forwarding_status().lag_samples == 180
    receiver.script = [(500, {}), (503, {}), (429, {"Retry-After": "7"})]
    now = timezone.now()

    first = forwarding_run(now=now)
    assert first.outcome == "retrying" and "500" in first.error
    state = ForwardingState.objects.get()
    assert (state.attempt, state.failed_requests) == (1, 1)
    assert 1.0 <= (state.next_attempt_at - now).total_seconds() <= 2.0  # base 2 s with jitter
    assert forwarding_run(now=now).outcome == "waiting"  # nothing sent while the back-off lasts

    now = state.next_attempt_at
    assert forwarding_run(now=now).outcome == "retrying"
    assert 2.0 <= (ForwardingState.objects.get().next_attempt_at - now).total_seconds() <= 4.0  # doubled

    now = ForwardingState.objects.get().next_attempt_at
    assert forwarding_run(now=now).outcome == "retrying"
    state = ForwardingState.objects.get()
    assert (state.next_attempt_at - now).total_seconds() == 7  # Retry-After honoured
    assert "429" in state.last_error
    assert forwarding_status().lag_samples == 180  # nothing left the queue

    done = forwarding_run(now=state.next_attempt_at)
    assert (done.outcome, done.sent_samples) == ("sent", 180)
    assert receiver.arrived() == expected  # every sample exactly once, each series in time order
    sent = [request for status, request in receiver.requests if status == 204]
    assert len(sent) == ForwardingState.objects.get().sent_requests
    assert all(sum(map(len, request.values())) <= 50 for request in sent)
    headers = receiver.headers[-1]
    assert headers["Content-Encoding"] == "snappy"
    assert headers["X-Prometheus-Remote-Write-Version"] == "0.1.0"
    assert headers["Authorization"] == "Bearer s3cret"
    status = forwarding_status()
    assert (status.lag_samples, status.sent_samples, status.failed_requests, status.attempt) == (0, 180, 3, 0)
    assert ForwardOutbox.objects.count() == 0


def test_a_batch_the_remote_end_refuses_is_recorded_and_skipped(receiver, settings, viewer_client):
    settings.FORWARD_BATCH_SAMPLES = 60
    _store()
    receiver.script = [(204, {}), (400, {})]
    result = forwarding_run()
    assert (result.sent_samples, result.rejected_samples) == (120, 60)
    state = ForwardingState.objects.get()
    assert (state.rejected_requests, state.rejected_samples, state.sent_requests) == (1, 60, 2)
    assert "400 Bad Request: out of order sample" in state.last_error
    assert sum(len(samples) for samples in receiver.arrived(statuses=(204, 400)).values()) == 180
    assert ForwardOutbox.objects.count() == 0  # the refused one is not retried
    # What is left over is visible at /metrics.
    text = viewer_client.get("/metrics").content.decode()
    assert "perfpilot_forward_rejected_samples_total 60.0" in text
    assert "perfpilot_forward_lag_samples 0.0" in text


def test_status_shows_the_lag_over_the_api(receiver, viewer_auth, anonymous_client):
    _store(count=5)
    ForwardOutbox.objects.update(created_at=timezone.now() - timedelta(seconds=90))
    body = anonymous_client.get("/api/v1/forwarding", **viewer_auth).json()
    assert body["enabled"] is True
    assert body["lag_samples"] == 30
    assert 89 <= body["lag_seconds"] <= 120
    assert body["endpoint"].startswith("http://127.0.0.1:")


def test_samples_stored_while_forwarding_is_off_are_not_queued(settings):
    settings.FORWARD_REMOTE_WRITE_URL = ""
    _store(count=5)
    assert ForwardOutbox.objects.count() == 0
    assert forwarding_run().outcome == "off"


def test_a_killed_forwarder_loses_nothing(receiver):
    expected = _store()
    receiver.hold.set()  # the remote end takes the request and never answers it
    code = (
        "import django; django.setup()\nfrom monitoring.services.forwarding import forwarding_run\nforwarding_run()\n"
    )
    env = {"PERFPILOT_FORWARD_REMOTE_WRITE_URL": receiver.url, "PERFPILOT_FORWARD_TIMEOUT": "600"}
    process, log = _spawn([], "forwarder.log", command=[sys.executable, "-c", code], env=env)
    try:
        deadline = time.monotonic() + 60
        while not receiver.requests and time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()[-2000:]
            time.sleep(0.1)
        assert receiver.requests, log.read_text()[-2000:]
        assert lock_holder(LOCK_KEY).pid == process.pid
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
    receiver.hold.clear()
    receiver.release.set()

    assert forwarding_status().lag_samples == 180  # the batch in flight was never taken off the queue
    result = forwarding_run()  # frees the dead owner's lock at once, then sends everything
    assert result.sent_samples == 180
    assert receiver.arrived() == expected  # the batch in flight is sent again, and answered this time
    assert forwarding_status().lag_samples == 0


def test_a_real_prometheus_receives_the_forwarded_samples(settings, tmp_path):
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        pytest.fail("Debian's prometheus package (2.42) is needed: /usr/bin/prometheus")
    port = free_port()
    (tmp_path / "prometheus.yml").write_text("global:\n  scrape_interval: 1h\n")
    process = subprocess.Popen(
        [
            prometheus,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-remote-write-receiver",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "prometheus.log").open("wb"),
        cwd=ROOT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base, process, tmp_path)
        settings.FORWARD_REMOTE_WRITE_URL = f"{base}/api/v1/write"
        expected = _store(count=10)
        result = forwarding_run()
        assert (result.outcome, result.sent_samples, result.rejected_samples) == ("sent", 60, 0), result.error
        newest = max(stamp for samples in expected.values() for stamp, _ in samples) / 1000
        answer = _query(base, 'postgres_connections{job="postgres",instance="db-1"}', newest)
        assert [(r["metric"], r["value"][1]) for r in answer] == [
            ({"__name__": "postgres_connections", "db": "shop", "instance": "db-1", "job": "postgres"}, "29")
        ]
        ranged = _query(base, "count_over_time(queue_depth[2h])", newest)
        assert [r["value"][1] for r in ranged] == ["30"]
    finally:
        process.terminate()
        process.wait(20)


def _wait_ready(base: str, process: subprocess.Popen, tmp_path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, (tmp_path / "prometheus.log").read_text()[-2000:]
        try:
            with urllib.request.urlopen(f"{base}/-/ready", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    pytest.fail("Prometheus did not become ready: " + (tmp_path / "prometheus.log").read_text()[-2000:])


def _query(base: str, expression: str, at: float) -> list[dict]:
    query = urllib.parse.urlencode({"query": expression, "time": f"{at:.3f}"})
    with urllib.request.urlopen(f"{base}/api/v1/query?{query}", timeout=10) as response:
        body = json.load(response)
    assert body["status"] == "success", body
    return body["data"]["result"]


def test_the_monitoring_page_shows_how_far_behind_forwarding_is(receiver, viewer_client):
    _store(count=5)
    ForwardingState.objects.create(pk=1, rejected_samples=60, last_error="60 samples rejected: HTTP 400 Bad Request")
    page = viewer_client.get("/monitoring/").content.decode()
    assert 'data-testid="forwarding"' in page
    assert "30 samples" in page
    assert "60 samples rejected: HTTP 400 Bad Request" in page
