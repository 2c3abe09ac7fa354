"""`remote_write_e2e`: a real Prometheus 2.42 scraping a local exporter and remote-writing to Perfpilot.

Debian's Prometheus (/usr/bin/prometheus, temp config and data dir, loopback) scrapes bench/exporter.py's
GET /e2e (E2E_SERIES series: counters, gauges, a histogram, each value a function of the scrape's
sequence number, and two marker gauges, the body's first and last series, holding the exporter's
wall-clock time at the scrape) every SCRAPE_INTERVAL
seconds and remote-writes, with its default queue settings, to Perfpilot's gunicorn (started as
`make run` starts it) with an operator API token, for PERFPILOT_BENCH_E2E_SECONDS (default 600).

Loss: the run is cut half an interval after the last scrape; once Prometheus's queue has sent all
it appended up to the cut, every sample up to the cut is read from Prometheus's TSDB (its query API, a range selector)
and from Perfpilot's (its store, and its query API with the same query), and compared sample by
sample: (series, timestamp, value). Delay to query: a probe asks Perfpilot's query API every
PROBE_INTERVAL for the markers and records (now - the marker's value) when a new one shows; a second
probe does the same against Prometheus's own query API (the baseline). The probe asks a second
gunicorn, so the first one's CPU is the remote writes' alone. CPU from /proc over the run.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import yaml
from django.contrib.auth import get_user_model
from django.db import connection
from prometheus_client.parser import text_string_to_metric_families

from bench import BenchResult, Figure, options, percentile
from bench.exporter import E2E_MARKERS, E2E_SEQUENCE, E2E_SERIES
from bench.ingest import _reset
from bench.servers import ROOT, embedded_server_processes, free_port, spawn, wait_listening, web_server_process
from core.roles import OPERATOR, user_set_role
from core.services import api_token_create
from core.supervisor import stop_process_group
from monitoring.models import Series

JOB = "bench-e2e"
SCRAPE_INTERVAL = 5  # seconds
PROBE_INTERVAL = 0.25  # seconds between two questions of a delay probe: the delays' resolution
DURATION = 600  # seconds; PERFPILOT_BENCH_E2E_SECONDS overrides it, --quick makes it 60
DRAIN_TIMEOUT = 120  # seconds Prometheus may take to send what it scraped before the cut
# Per scrape Prometheus adds up, scrape_duration_seconds, scrape_samples_scraped,
# scrape_samples_post_metric_relabeling and scrape_series_added to the exporter's series.
SERIES_PER_SCRAPE = E2E_SERIES + 5
LOG = ROOT / "var" / "bench" / "e2e-scrapes.log"
EXPORTER_FAILED = "remote_write_e2e: the exporter did not start (var/bench/e2e-exporter.out)"
REMOTE_STORAGE = (
    "prometheus_remote_storage_samples_in_total",
    "prometheus_remote_storage_samples_total",
    "prometheus_remote_storage_samples_failed_total",
    "prometheus_remote_storage_samples_retried_total",
    "prometheus_remote_storage_samples_dropped_total",
    "prometheus_remote_storage_samples_pending",
    "prometheus_remote_storage_shards",
    "prometheus_remote_storage_highest_timestamp_in_seconds",
    "prometheus_tsdb_head_samples_appended_total",
)


def _duration() -> int:
    if raw := os.environ.get("PERFPILOT_BENCH_E2E_SECONDS"):
        if not raw.isdigit() or int(raw) < 30:
            raise SystemExit(f"PERFPILOT_BENCH_E2E_SECONDS must be a whole number of seconds, at least 30: {raw!r}")
        return int(raw)
    return 60 if options.quick else DURATION


def _get(port: int, path: str, *, token: str = "", timeout: float = 10) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _query(port: int, query: str, *, at: float | None = None, token: str = "", timeout: float = 10) -> list:
    """An instant query of Perfpilot's API (with a token) or, without one, of Prometheus's own."""
    params = {"query": query, **({"time": f"{at:.3f}"} if at is not None else {})}
    prefix = "/prometheus" if token else ""  # Perfpilot serves the API under /prometheus/api/v1/
    status, body = _get(port, f"{prefix}/api/v1/query?{urllib.parse.urlencode(params)}", token=token, timeout=timeout)
    if status != 200:
        raise RuntimeError(f"query {query!r} to port {port} answered {status}: {body[:300]!r}")
    return json.loads(body)["data"]["result"]


@dataclass
class _Probe:
    """Asks one query API for the markers every PROBE_INTERVAL; per marker, a delay per new value:
    the time the probe first saw it minus the scrape's (so up to PROBE_INTERVAL late)."""

    ask: object  # () -> {marker name: value}
    delays: dict[str, list[float]] = field(default_factory=lambda: {name: [] for name in E2E_MARKERS})
    errors: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        last = dict.fromkeys(E2E_MARKERS, 0.0)
        while not self.stop.wait(PROBE_INTERVAL):
            try:
                values = self.ask()
            except (OSError, RuntimeError, ValueError, KeyError):
                self.errors += 1
                continue
            seen = time.time()
            for name, value in values.items():
                if value > last[name]:
                    self.delays[name].append(seen - value)
                    last[name] = value

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, daemon=True)
        thread.start()
        return thread


MARKERS_QUERY = '{__name__=~"' + "|".join(E2E_MARKERS) + '"}'


def _markers(result: list) -> dict[str, float]:
    return {series["metric"]["__name__"]: float(series["value"][1]) for series in result}


def _prometheus_metrics(port: int) -> dict[str, float]:
    """Prometheus's own counters of REMOTE_STORAGE, summed over their labels."""
    _status, body = _get(port, "/metrics")
    totals: dict[str, float] = defaultdict(float)
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            if sample.name in REMOTE_STORAGE:
                totals[sample.name] += sample.value
    return dict(totals)


def _queue_config(port: int) -> dict:
    """The queue settings Prometheus runs the remote write with (its defaults: none are set)."""
    _status, body = _get(port, "/api/v1/status/config")
    config = yaml.safe_load(json.loads(body)["data"]["yaml"])
    return config["remote_write"][0].get("queue_config", {})


def _cpu_seconds(processes: list[psutil.Process]) -> float:
    """CPU seconds of the processes, their live descendants and the children they have reaped (the
    PostgreSQL backends that ended, a gunicorn worker that was replaced)."""
    total = 0.0
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            for member in [process, *process.children(recursive=True)]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    total += sum(member.cpu_times()[:4])  # user, system, children_user, children_system
    return total


def _scrapes(cut: float | None = None) -> list[tuple[int, float]]:
    """(sequence number, exporter time) of the exporter's /e2e scrapes so far, up to cut."""
    found = []
    for line in LOG.read_text().splitlines():
        kind, number, stamp = line.split()
        if kind == "e2e" and (cut is None or float(stamp) <= cut):
            found.append((int(number), float(stamp)))
    return found


def _series_key(labels: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


def _samples_from_api(result: list) -> dict[tuple, dict[int, float]]:
    """A matrix answer of a query API -> {series: {timestamp ms: value}}."""
    return {
        _series_key(series["metric"]): {round(float(t) * 1000): float(v) for t, v in series["values"]}
        for series in result
    }


def _samples_from_store(cut_ms: int) -> tuple[dict[tuple, dict[int, float]], int]:
    """Perfpilot's stored samples of the job up to cut_ms, read from monitoring_sample: ({series:
    {timestamp ms: value}}, rows), rows counting any stored twice."""
    stored: dict[tuple, dict[int, float]] = {}
    rows = 0
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT r.metric, r.labels, round(extract(epoch FROM s.ts) * 1000)::bigint, s.value "
            "FROM monitoring_sample s JOIN monitoring_series r ON r.id = s.series_id "
            "WHERE r.target_id IS NULL AND r.labels @> %s::jsonb AND s.ts <= to_timestamp(%s / 1000.0)",
            [json.dumps({"job": JOB}), cut_ms],
        )
        for metric, labels, stamp, value in cursor:
            labels = json.loads(labels) if isinstance(labels, str) else labels
            stored.setdefault(_series_key({"__name__": metric, **labels}), {})[stamp] = value
            rows += 1
    return stored, rows


@dataclass(frozen=True)
class _Comparison:
    expected: int  # samples in Prometheus's TSDB
    found: int  # of them, found in the other with the same value
    missing: int
    extra: int  # samples the other has that Prometheus has not
    wrong_values: int


def _compare(reference: dict[tuple, dict[int, float]], other: dict[tuple, dict[int, float]]) -> _Comparison:
    expected = found = missing = wrong = extra = 0
    for key, samples in reference.items():
        theirs = other.get(key, {})
        expected += len(samples)
        for stamp, value in samples.items():
            if stamp not in theirs:
                missing += 1
            elif theirs[stamp] == value:
                found += 1
            else:
                wrong += 1
        extra += len(theirs.keys() - samples.keys())
    extra += sum(len(samples) for key, samples in other.items() if key not in reference)
    return _Comparison(expected, found, missing, extra, wrong)


def _prometheus_start(folder: Path, exporter_port: int, web_port: int, token: str) -> tuple[subprocess.Popen, int]:
    (folder / "token").write_text(token)
    (folder / "prometheus.yml").write_text(
        f"""
global: {{scrape_interval: {SCRAPE_INTERVAL}s, scrape_timeout: {SCRAPE_INTERVAL - 1}s}}
scrape_configs:
  - job_name: {JOB}
    metrics_path: /e2e
    static_configs: [{{targets: ["127.0.0.1:{exporter_port}"]}}]
remote_write:
  - url: http://127.0.0.1:{web_port}/prometheus/api/v1/write
    authorization: {{credentials_file: {folder / "token"}}}
"""
    )
    port = free_port()
    process = subprocess.Popen(
        [
            "/usr/bin/prometheus",
            f"--config.file={folder / 'prometheus.yml'}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(folder / "prometheus.log").open("wb"),
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if _get(port, "/-/ready", timeout=2)[0] == 200:
                return process, port
        except OSError:
            pass
        time.sleep(0.3)
    stop_process_group(process)
    raise SystemExit(f"remote_write_e2e: Prometheus did not start: {(folder / 'prometheus.log').read_text()[-1500:]}")


OUTCOMES = ("", "failed_", "dropped_")  # prometheus_remote_storage_samples_{outcome}total


def _wait_drained(port: int, cut: float) -> tuple[dict[str, float], float]:
    """Until Prometheus's queue has sent (or given up on) every sample appended up to the cut: its
    counters then, and the seconds waited (inf after DRAIN_TIMEOUT).

    samples_in counts samples as they are appended; once the highest appended timestamp is past the
    cut, the samples_in seen then include every sample up to the cut, and the queue has dealt with
    them when sent + failed + dropped reaches that number.
    """
    began = time.monotonic()
    appended_by_cut = None
    while True:
        metrics = _prometheus_metrics(port)
        if appended_by_cut is None and metrics.get("prometheus_remote_storage_highest_timestamp_in_seconds", 0) > cut:
            appended_by_cut = metrics.get("prometheus_remote_storage_samples_in_total", 0.0)
        dealt = sum(metrics.get(f"prometheus_remote_storage_samples_{n}total", 0.0) for n in OUTCOMES)
        if appended_by_cut is not None and dealt >= appended_by_cut:
            return metrics, time.monotonic() - began
        if time.monotonic() - began > DRAIN_TIMEOUT:
            _progress(f"Prometheus had not sent everything after {DRAIN_TIMEOUT} s: {metrics}")
            return metrics, math.inf
        time.sleep(0.5)


@dataclass
class _Run:
    duration: int
    window: float = 0.0
    scrapes: list = field(default_factory=list)
    metrics: dict = field(default_factory=dict)
    drain_seconds: float = 0.0
    prometheus_samples: dict = field(default_factory=dict)
    stored: dict = field(default_factory=dict)
    stored_rows: int = 0
    api_samples: dict | None = None
    api_seconds: float = 0.0
    api_error: str = ""
    probe: _Probe | None = None
    baseline_probe: _Probe | None = None
    perfpilot_cpu: float = 0.0
    query_cpu: float = 0.0
    database_cpu: float = 0.0
    prometheus_cpu: float = 0.0
    cut: float = 0.0
    log_tail: str = ""
    queue_config: dict = field(default_factory=dict)


def _measure(run: _Run, token: str, folder: Path) -> None:
    LOG.parent.mkdir(parents=True, exist_ok=True)
    LOG.write_text("")
    exporter_port = free_port()
    exporter = spawn([sys.executable, "-m", "bench.exporter", str(exporter_port), str(LOG)], "e2e-exporter.out")
    try:
        wait_listening(
            exporter_port, exporter, "remote_write_e2e: the exporter did not start (var/bench/e2e-exporter.out)"
        )
        # Two gunicorns on the same database: one takes the remote writes, the other answers the
        # probe's queries, so each one's CPU is measured apart.
        with web_server_process() as (web_port, writer), web_server_process() as (query_port, reader):
            prometheus, prometheus_port = _prometheus_start(folder, exporter_port, web_port, token)
            _progress("exporter, Perfpilot and Prometheus started")
            try:
                gunicorns = (psutil.Process(writer.pid), psutil.Process(reader.pid))
                _observe(run, token, query_port, prometheus_port, gunicorns, prometheus)
            finally:
                stop_process_group(prometheus)
                run.log_tail = (folder / "prometheus.log").read_text()[-3000:]
    finally:
        stop_process_group(exporter)


def _progress(message: str) -> None:
    print(f"  remote_write_e2e: {message}", flush=True)


def _observe(
    run: _Run,
    token: str,
    web_port: int,
    prometheus_port: int,
    gunicorns: tuple[psutil.Process, psutil.Process],
    prometheus: subprocess.Popen,
) -> None:
    """Run for run.duration, cut, wait for Prometheus to send past the cut, read both sides.
    web_port is the gunicorn that answers queries; gunicorns are (the writer, the reader)."""
    run.queue_config = _queue_config(prometheus_port)
    servers = embedded_server_processes()
    prometheus_process = psutil.Process(prometheus.pid)
    run.probe = _Probe(ask=lambda: _markers(_query(web_port, MARKERS_QUERY, token=token)))
    run.baseline_probe = _Probe(ask=lambda: _markers(_query(prometheus_port, MARKERS_QUERY)))
    threads = [run.probe.start(), run.baseline_probe.start()]
    began = time.time()
    watched = [[gunicorns[0]], [gunicorns[1]], servers, [prometheus_process]]
    cpu_before = [_cpu_seconds(processes) for processes in watched]
    try:
        report = began + 60
        while time.time() - began < run.duration:
            if prometheus.poll() is not None:
                raise SystemExit("remote_write_e2e: Prometheus stopped during the run")
            time.sleep(1)
            if time.time() >= report:
                report += 60
                _progress(f"{time.time() - began:.0f} s, {len(_scrapes())} scrapes")
        # Half an interval after the last scrape: no scrape's timestamp is near the cut.
        run.cut = max(stamp for _, stamp in _scrapes()) + SCRAPE_INTERVAL / 2
        time.sleep(max(0.0, run.cut - time.time()))
        run.window = time.time() - began
        cpu_after = [_cpu_seconds(processes) for processes in watched]
        run.perfpilot_cpu, run.query_cpu, run.database_cpu, run.prometheus_cpu = (
            (after - before) / run.window for before, after in zip(cpu_before, cpu_after, strict=True)
        )
        run.metrics, run.drain_seconds = _wait_drained(prometheus_port, run.cut)
        _progress(f"cut; Prometheus sent all it appended up to it in {run.drain_seconds:.1f} s")
    finally:
        run.probe.stop.set()
        run.baseline_probe.stop.set()
        for thread in threads:
            thread.join(5)
    run.scrapes = _scrapes(run.cut)
    reach = math.ceil(run.cut - began) + 60
    selector = f'{{job="{JOB}"}}[{reach}s]'
    run.prometheus_samples = _samples_from_api(_query(prometheus_port, selector, at=run.cut, timeout=300))
    run.stored, run.stored_rows = _samples_from_store(round(run.cut * 1000))
    _progress("read Prometheus's TSDB and Perfpilot's store")
    started = time.perf_counter()
    try:
        run.api_samples = _samples_from_api(_query(web_port, selector, at=run.cut, token=token, timeout=600))
        run.api_seconds = time.perf_counter() - started
    except (OSError, RuntimeError, ValueError, KeyError) as exc:
        run.api_error = str(exc)[:300]


def _sequence_gaps(stored: dict[tuple, dict[int, float]], scrapes: list[tuple[int, float]]) -> int:
    """Scrapes the exporter served before the cut whose sequence number Perfpilot does not hold."""
    held = {
        int(v) for key, samples in stored.items() if dict(key)["__name__"] == E2E_SEQUENCE for v in samples.values()
    }
    return sum(1 for number, _ in scrapes if number not in held)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms"


def _delays(delays: list[float]) -> tuple[float, float, float]:
    return percentile(delays, 0.5), percentile(delays, 0.95), max(delays)


def _delay_figures(run: _Run) -> tuple[Figure, ...]:
    first, last = E2E_MARKERS
    figures = []
    for marker, label in ((last, "whole scrape (its last series)"), (first, "the scrape's first series")):
        ours, theirs = run.probe.delays[marker], run.baseline_probe.delays[marker]
        if not ours or not theirs:
            raise SystemExit(f"remote_write_e2e: the delay probes saw no {marker}; Prometheus's log: {run.log_tail}")
        p50, p95, worst = _delays(ours)
        base50, base95, base_worst = _delays(theirs)
        figures += [
            Figure(
                f"Delay to query in Perfpilot, {label}, p95",
                _ms(p95),
                "",
                f"Prometheus's own query API: {_ms(base95)}",
                f"{p95 / base95:.1f}" if base95 > 0 else "",
            ),
            Figure(
                f"Delay to query in Perfpilot, {label}, p50 / max",
                f"{_ms(p50)} / {_ms(worst)}",
                "",
                f"Prometheus: {_ms(base50)} / {_ms(base_worst)}",
            ),
        ]
    return tuple(figures)


def _forget_series() -> None:
    """The job's series of earlier runs: each run's exporter has another port, so other series."""
    Series.objects.filter(target=None, labels__job=JOB).delete()


def run() -> BenchResult:
    if not Path("/usr/bin/prometheus").exists():
        raise SystemExit("remote_write_e2e needs Debian's Prometheus 2.42 (/usr/bin/prometheus): `make prometheus`")
    _reset()
    _forget_series()
    user, _ = get_user_model().objects.get_or_create(username="bench-remote-write-e2e")
    user_set_role(user=user, role=OPERATOR)
    token = api_token_create(user=user, name="bench-e2e", via="command").raw
    run = _Run(duration=_duration())
    with tempfile.TemporaryDirectory(prefix="perfpilot-bench-e2e-") as folder:
        _measure(run, token, Path(folder))
    _reset()
    _forget_series()
    return _result(run)


def _result(run: _Run) -> BenchResult:
    store = _compare(run.prometheus_samples, run.stored)
    api = _compare(run.prometheus_samples, run.api_samples) if run.api_samples is not None else None
    duplicates = run.stored_rows - sum(len(s) for s in run.stored.values())
    m = run.metrics
    failed = m.get("prometheus_remote_storage_samples_failed_total", 0.0)
    retried = m.get("prometheus_remote_storage_samples_retried_total", 0.0)
    dropped = m.get("prometheus_remote_storage_samples_dropped_total", 0.0)
    scrapes = len(run.scrapes)
    gaps = _sequence_gaps(run.stored, run.scrapes)
    lost = store.missing + store.wrong_values
    rate = store.found / run.window
    base_rate = store.expected / run.window
    series = len(run.prometheus_samples)
    api_text = (
        f"{api.found:,} of {api.expected:,} ({api.missing:,} missing, {api.extra:,} extra, {api.wrong_values:,} "
        f"different), answered in {run.api_seconds:.1f} s"
        if api
        else f"no answer: {run.api_error}"
    )
    figures = (
        Figure(
            "Samples lost (in Prometheus's TSDB, not in Perfpilot's store)",
            f"{lost:,}",
            "0",
            f"{store.expected:,} samples in Prometheus",
            f"{store.found / store.expected:.6f} stored" if store.expected else "",
            lost == 0 and store.expected > 0,
        ),
        Figure(
            "Samples via Perfpilot's query API, same range selector",
            api_text,
            "all",
            f"{store.expected:,} samples in Prometheus",
            f"{api.found / api.expected:.6f}" if api and api.expected else "",
            api is not None and api.found == api.expected and api.extra == 0,
        ),
        Figure(
            "Extra or duplicate samples in Perfpilot",
            f"{store.extra:,} extra, {duplicates:,} stored twice",
            "0",
            passed=store.extra == 0 and duplicates == 0,
        ),
        Figure(
            "Scrapes served by the exporter / missing from Perfpilot (sequence numbers)",
            f"{scrapes:,} / {gaps:,}",
            "0 missing",
            f"{scrapes:,} scrapes x {SERIES_PER_SCRAPE:,} series = {scrapes * SERIES_PER_SCRAPE:,} samples",
            f"{store.expected / (scrapes * SERIES_PER_SCRAPE):.6f} in Prometheus" if scrapes else "",
            gaps == 0,
        ),
        Figure(
            "Prometheus remote storage: failed / retried / dropped samples",
            f"{failed:,.0f} / {retried:,.0f} / {dropped:,.0f}",
            "0 / 0 / 0",
            passed=failed == retried == dropped == 0,
        ),
        *_delay_figures(run),
        Figure(
            "Ingest rate (stored samples / run)",
            f"{rate:,.0f} samples/s",
            "",
            f"Prometheus TSDB: {base_rate:,.0f} samples/s",
            f"{rate / base_rate:.3f}" if base_rate else "",
        ),
        Figure(
            "CPU, Perfpilot web taking the remote writes (gunicorn)",
            f"{run.perfpilot_cpu:.3f} core ({run.perfpilot_cpu / rate * 1e6:.0f} µs/sample)",
            "",
            f"Prometheus (scrape, TSDB, send): {run.prometheus_cpu:.3f} core",
            f"{run.perfpilot_cpu / run.prometheus_cpu:.2f}" if run.prometheus_cpu else "",
        ),
        Figure("CPU, Perfpilot's PostgreSQL and Redis", f"{run.database_cpu:.3f} core"),
        Figure(
            "CPU, Perfpilot web answering the probe's queries (second gunicorn)",
            f"{run.query_cpu:.3f} core ({run.query_cpu * PROBE_INTERVAL * 1000:.1f} ms/query)",
        ),
    )
    sent = m.get("prometheus_remote_storage_samples_total", 0.0)
    appended = m.get("prometheus_tsdb_head_samples_appended_total", 0.0)
    return BenchResult(
        name="remote_write_e2e",
        title="End to end: Prometheus 2.42 scraping an exporter and remote-writing to Perfpilot",
        setup=(
            f"Debian's Prometheus 2.42 scrapes a local exporter (bench/exporter.py, its own process) of "
            f"{E2E_SERIES:,} series (2,000 counters, 2,000 gauges, a histogram of 80 label sets with 11 buckets, "
            "two marker gauges and a sequence gauge; every value changes at every scrape and encodes the scrape's "
            "number) "
            f"every {SCRAPE_INTERVAL} s, {series:,} series with Prometheus's own per-scrape ones, for "
            f"{run.duration} s ({scrapes:,} scrapes), and remote-writes with its default queue settings to "
            "`POST /prometheus/api/v1/write` of gunicorn as `make run` starts it, with an operator's API token. "
            "The run is cut half an interval after the last scrape; once Prometheus's queue had sent all it appended "
            "up to the cut "
            f"(it took {run.drain_seconds:.1f} s), every sample up to the cut was read from Prometheus's TSDB "
            f'(`{{job="{JOB}"}}[…]` on its query API) and from Perfpilot\'s store (SQL) and query API (the same '
            "query), and compared by series, timestamp and value. Delay: a probe asks Perfpilot's "
            "`/prometheus/api/v1/query` every "
            f"{PROBE_INTERVAL * 1000:.0f} ms for the two marker gauges, the first and the last series of the "
            "exporter's body, whose value is the exporter's wall-clock time at the scrape, and records the time it "
            "first sees a new value minus that value (so up to one probe period late); the delay includes "
            "Prometheus's own batching. Baseline: the same probe against Prometheus's own query API. The probe "
            "asks a second gunicorn on the same database, so the writer's CPU is the remote writes' alone. CPU "
            "from /proc over the run, in cores (CPU seconds / wall seconds)."
            + (" Shortened run (`--quick` or PERFPILOT_BENCH_E2E_SECONDS)." if run.duration != DURATION else "")
        ),
        figures=figures,
        notes=(
            "Prometheus's counters at the end: samples in "
            f"{m.get('prometheus_remote_storage_samples_in_total', 0):,.0f}, "
            f"sent {sent:,.0f}, appended to its head {appended:,.0f}, pending "
            f"{m.get('prometheus_remote_storage_samples_pending', 0):,.0f}, shards "
            f"{m.get('prometheus_remote_storage_shards', 0):.0f}. Probe errors: Perfpilot {run.probe.errors}, "
            f"Prometheus {run.baseline_probe.errors}. Stored in Perfpilot: {store.found:,} of {store.expected:,} "
            f"({store.missing:,} missing, {store.wrong_values:,} with another value). Prometheus's queue "
            f"settings (its defaults): {', '.join(f'{k} {v}' for k, v in run.queue_config.items())}: a scrape's "
            "samples go out in batches of max_samples_per_send, and the batch left short at the end of a scrape "
            "waits for batch_send_deadline, which is most of Perfpilot's whole-scrape delay (Prometheus's own query "
            "API sees a scrape as soon as it is appended)."
        ),
    )
