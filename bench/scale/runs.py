"""One run of the scale benchmark: start the workers and the scheduler process(es), warm up, and
measure over a window from outside (the exporter's log, Target.last_success_at, /proc and
pg_stat_database)."""

from __future__ import annotations

import itertools
import math
import os
import signal
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass

import psutil
from django.db import connection
from django.utils import timezone

from bench import percentile
from bench.scale.designs import INTERVAL, Design, collect_queues
from bench.servers import ROOT, celery_spawn, embedded_server_processes, spawn
from config.celery import app
from core.supervisor import stop_process_group
from monitoring.models import Target

LATE = INTERVAL + 5  # "collected within one interval + 5 s"
WARMUP = 20.0  # two intervals at least, and until every target was collected once in this run (new
WARMUP_MAX = 45.0  # workers fill their caches on each target's first collection), at most this long
# make run's heartbeat interval (the bench's test settings have 1 s, which would wake beat every second).
ENV = {"PERFPILOT_HEARTBEAT_INTERVAL": "5"}
SAMPLE_EVERY = 2.0
SATURATED = 0.9  # share of a core per worker process, or of the machine's cores, taken as saturated
LOG = ROOT / "var" / "bench" / "scale-exporter.log"


@dataclass(frozen=True)
class Run:
    design: str
    targets: int
    workers: int
    schedulers: int
    killed: bool
    window: float
    warmed: float  # seconds of warm-up it took
    machine_cores: float  # every process on the machine, ours and others', over the window
    share: float  # % of targets collected within LATE all window long
    age_p95: float
    age_max: float
    scrapes: int
    dispatched: int
    scheduler_cores: float
    worker_cores: float
    exporter_cores: float
    server_cores: float  # the embedded PostgreSQL (all its backends) and Redis
    commits_per_s: float
    rows_per_s: float
    doubled: int
    missed: int
    long_gaps: int

    @property
    def scheduler_ms(self) -> float:
        return self.scheduler_cores * self.window * 1000 / max(self.dispatched, 1)

    @property
    def worker_ms(self) -> float:
        return self.worker_cores * self.window * 1000 / max(self.scrapes, 1)

    @property
    def saturated(self) -> str:
        """What ran out of CPU: "workers" (a core each), "machine" (all its cores, whoever used them), or ""."""
        if self.worker_cores >= SATURATED * self.workers:
            return "workers"
        return "machine" if self.machine_cores >= SATURATED * (os.cpu_count() or 1) else ""


# --- processes -------------------------------------------------------------------------------


def _purge(queues: list[str]) -> None:
    """Empty the queues between runs: a saturated run leaves messages the next one must not serve."""
    with app.connection_for_write() as conn:
        for name in queues:
            conn.default_channel.queue_purge(name)


def _wait_for_workers(count: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        names = {name for reply in app.control.ping(timeout=1.0) for name in reply}
        if sum(1 for name in names if name.startswith("scale-w")) >= count:
            return
    raise SystemExit("scale benchmark: the workers did not come online (var/bench/scale-worker*.log)")


def _cpu(processes: list[psutil.Process], seen: dict[int, float]) -> None:
    """Record the CPU seconds so far of each process and its children, by pid (a child that has
    ended keeps its last reading, so a pool process replaced mid-window loses at most one sample)."""
    for process in processes:
        try:
            family = [process, *process.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        for member in family:
            try:
                times = member.cpu_times()
            except psutil.NoSuchProcess:
                continue
            seen[member.pid] = times.user + times.system


def _cores(start: dict[int, float], end: dict[int, float], window: float) -> float:
    return sum(value - start.get(pid, 0.0) for pid, value in end.items()) / window


def _db_stats() -> tuple[int, int]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT xact_commit, tup_inserted + tup_updated + tup_deleted FROM pg_stat_database "
            "WHERE datname = current_database()"
        )
        commits, rows = cursor.fetchone()
    return commits, rows


def _ages(ids: list[int]) -> list[float]:
    now = timezone.now()
    stamps = Target.objects.filter(pk__in=ids).values_list("last_success_at", flat=True)
    return [(now - stamp).total_seconds() if stamp else math.inf for stamp in stamps]


# --- one run ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Setup:
    design: Design
    ids: list[int]
    index: dict[int, int]  # exporter path number -> target id
    workers: int
    schedulers: int
    kill: bool
    warmup: float
    window: float
    exporter: psutil.Process


def run_once(setup: Setup) -> Run:
    design, ids = setup.design, setup.ids
    queues = collect_queues(ids)
    _purge(queues)
    worker_argv = ["worker", "--loglevel", "WARNING", "--queues", ",".join(queues), "--concurrency", "1"]
    workers = [
        celery_spawn([*worker_argv, "--hostname", f"scale-w{n}@%h"], f"scale-worker{n}.log", extra_env=ENV)
        for n in range(1, setup.workers + 1)
    ]
    schedulers = []
    try:
        _wait_for_workers(setup.workers)
        design.prepare(ids)
        offset, started = LOG.stat().st_size, time.time()
        schedulers = [
            spawn(design.command(n), f"scale-{design.key}{n}.log", extra_env=ENV)
            for n in range(1, setup.schedulers + 1)
        ]
        warmed = _warm_up(setup, offset)
        return _measure(setup, schedulers, workers, started, offset, warmed)
    finally:
        for process in schedulers + workers:
            stop_process_group(process)
        _purge(queues)


def _read_scrapes(offset: int) -> Iterator[tuple[int, float]]:
    """(path number, time) of each scrape the exporter logged after byte `offset` of its log."""
    with LOG.open() as log:
        log.seek(offset)
        for line in log:
            if not line.endswith("\n"):
                break  # the exporter is writing this one
            number, _, stamp = line.partition(" ")
            yield int(number), float(stamp)


def _warm_up(setup: Setup, offset: int) -> float:
    """Wait WARMUP, then until every target was scraped in this run (at most WARMUP_MAX); the seconds waited."""
    started = time.monotonic()
    time.sleep(setup.warmup)
    while time.monotonic() - started < WARMUP_MAX:
        if setup.index.keys() <= {number for number, _ in _read_scrapes(offset)}:
            break
        time.sleep(1)
    return time.monotonic() - started


def _busy() -> float:
    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0) - getattr(times, "guest", 0.0)


def _measure(setup: Setup, schedulers: list, workers: list, started: float, offset: int, warmed: float) -> Run:
    roles = {
        "scheduler": [psutil.Process(p.pid) for p in schedulers],
        "worker": [psutil.Process(p.pid) for p in workers],
        "exporter": [setup.exporter],
        "servers": embedded_server_processes(),
    }
    begin = {role: {} for role in roles}
    seen = {role: {} for role in roles}
    for role, processes in roles.items():
        _cpu(processes, begin[role])
    commits0, rows0 = _db_stats()
    busy0 = _busy()
    dispatched0 = setup.design.dispatched(setup.ids) if setup.design.dispatched else 0
    t0 = time.time()
    kill_at = t0 + setup.window / 2 if setup.kill else math.inf
    ages: list[float] = []
    while time.time() < t0 + setup.window:
        if time.time() >= kill_at:
            _cpu(roles["scheduler"][:1], seen["scheduler"])  # its CPU up to the kill
            os.killpg(schedulers[0].pid, signal.SIGKILL)
            roles["scheduler"] = roles["scheduler"][1:]
            kill_at = math.inf
        for role, processes in roles.items():
            _cpu(processes, seen[role])
        ages += _ages(setup.ids)
        time.sleep(min(SAMPLE_EVERY, max(0.0, t0 + setup.window - time.time())))
    t1 = time.time()
    window = t1 - t0
    for role, processes in roles.items():
        _cpu(processes, seen[role])
    commits1, rows1 = _db_stats()
    machine = (_busy() - busy0) / window
    scrapes = _scrapes(setup.index, offset=offset, since=started, t0=t0, t1=t1)
    dispatched = setup.design.dispatched(setup.ids) - dispatched0 if setup.design.dispatched else scrapes["scrapes"]
    return Run(
        design=setup.design.key,
        targets=len(setup.ids),
        workers=setup.workers,
        schedulers=setup.schedulers,
        killed=setup.kill,
        window=window,
        warmed=warmed,
        machine_cores=machine,
        share=100.0 * scrapes["on_time"] / len(setup.ids),
        age_p95=percentile(ages, 0.95),
        age_max=max(ages),
        scrapes=scrapes["scrapes"],
        dispatched=dispatched,
        scheduler_cores=_cores(begin["scheduler"], seen["scheduler"], window),
        worker_cores=_cores(begin["worker"], seen["worker"], window),
        exporter_cores=_cores(begin["exporter"], seen["exporter"], window),
        server_cores=_cores(begin["servers"], seen["servers"], window),
        commits_per_s=(commits1 - commits0) / window,
        rows_per_s=(rows1 - rows0) / window,
        doubled=scrapes["doubled"],
        missed=scrapes["missed"],
        long_gaps=scrapes["long_gaps"],
    )


def _scrapes(index: dict[int, int], *, offset: int, since: float, t0: float, t1: float) -> dict[str, int]:
    """Judge each target's scrapes from the exporter's log: from `since` (the schedulers' start) to t1,
    the figures counting over the window t0..t1."""
    times: dict[int, list[float]] = defaultdict(list)
    for number, at in _read_scrapes(offset):
        if since <= at <= t1 and number in index:
            times[number].append(at)
    counts = {"scrapes": 0, "on_time": 0, "doubled": 0, "missed": 0, "long_gaps": 0}
    for number in index:
        seen = sorted(times[number])
        before = [at for at in seen if at < t0]
        inside = [at for at in seen if at >= t0]
        counts["scrapes"] += len(inside)
        # The edges count as gaps too: from the last scrape before the window (or the schedulers'
        # start), and from the last scrape to the window's end.
        points = [before[-1] if before else since, *inside, t1]
        gaps = [b - a for a, b in itertools.pairwise(points)]
        counts["on_time"] += bool(inside) and max(gaps) <= LATE
        counts["doubled"] += sum(1 for a, b in itertools.pairwise(seen) if b >= t0 and b - a < INTERVAL / 2)
        counts["missed"] += sum(max(0, math.ceil(gap / INTERVAL - 1.5)) for gap in gaps)
        counts["long_gaps"] += sum(1 for gap in gaps if gap > 2 * INTERVAL)
    return counts
