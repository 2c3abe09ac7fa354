"""Benchmarks: `make bench` runs them all, `make bench BENCH_ARGS=query` one of them.

Each benchmark is a module with `run() -> BenchResult`, listed in BENCHMARKS. The harness
(bench/__main__.py) starts the embedded servers of its own data dir (var/bench), migrates, runs the
selected benchmarks, prints their figures and rewrites their sections of docs/benchmarks.md.
Modules are imported only after Django is set up, which is why the registry holds module paths.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

BENCHMARKS: dict[str, str] = {
    "ingest": "bench.ingest",
    "remote_write": "bench.remote_write",
    "forwarding": "bench.forwarding",
    "remote_write_e2e": "bench.remote_write_e2e",
    "query": "bench.query",
    "collectors": "bench.collectors",
    "http": "bench.http",
    "optimizer": "bench.optimizer",
    "scaling": "bench.scaling",
    "alerts": "bench.alerts",
    "faults_runs": "bench.faults_runs",
    "explain": "bench.explain",
    "nplusone": "bench.nplusone",
    "plan_regression": "bench.plan_regression",
    "promql": "bench.promql",
    "pageweight": "bench.pageweight",
    "lighthouse": "bench.lighthouse",
    "faults_outage": "bench.faults_outage",
    "fuzz": "bench.fuzz",
    "scale": "bench.scale",
}


@dataclass(frozen=True)
class Options:
    """Command-line options of `python -m bench` that benchmarks may read (the defaults are the full run)."""

    quick: bool = False  # a smaller, shorter run to check a change to a benchmark
    scale_sizes: tuple[int, ...] = ()  # target counts of `scale`; empty: its own defaults
    scale_window: float | None = None  # seconds of `scale`'s measured window; None: its own default


options = Options()  # replaced by bench/__main__.py from the command line before any run()


@dataclass(frozen=True)
class Figure:
    """One measured figure, with its target and the baseline measured in the same run."""

    name: str
    value: str
    target: str = ""
    baseline: str = ""
    ratio: str = ""
    passed: bool | None = None  # None: reported for context, no target


@dataclass(frozen=True)
class BenchResult:
    name: str
    title: str
    setup: str  # markdown: what was stored and how it was measured
    figures: tuple[Figure, ...]
    notes: str = ""  # markdown after the table


def percentile(samples: list[float], fraction: float) -> float:
    """Nearest-rank percentile of samples (fraction in 0..1), as in p50 / p95."""
    ordered = sorted(samples)
    rank = max(1, min(len(ordered), math.ceil(fraction * len(ordered))))
    return ordered[rank - 1]


def summary_ms(samples_s: list[float]) -> tuple[float, float, float]:
    """p50, p95 and mean of timings in seconds, as milliseconds."""
    return (
        percentile(samples_s, 0.50) * 1000,
        percentile(samples_s, 0.95) * 1000,
        statistics.fmean(samples_s) * 1000,
    )
