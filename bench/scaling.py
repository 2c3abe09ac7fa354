"""`scaling`: one beat tick over 1,000 services x 3 rules, and HPA rules against a naive scaler on a bursty trace.

Tick: 1,000 enabled services (webhook executors in dry run without a status URL, so no network
call is timed: the executor reports the count last applied), 3 rules each on their own series
with a fresh sample, and 20 earlier decisions per service inside the 300 s scale-down window (the
steady-state history). `scaling_tick()` is timed end to end: locks, metric reads, history,
3,000 proposals, stabilization, policies, 1,000 decisions written. Baseline, same run: the raw
metric reads alone (`series_latest` of the 3,000 series).

Replay: a 6-hour bursty trace (one point per 15 s: a daily-shaped base load, ten bursts of 2-4x
lasting 2-12 minutes, +-3 % noise) is stored as a series, recorded while 4 replicas ran, and
replayed through `rule_replay` (monitoring selectors, the pure evaluator, default HPA behaviour,
target 60, min 1, max 40). The naive scaler, on the same plant model, adds a replica when the
metric is above target + 10 % and removes one when below target - 10 %, every 15 s. "Kept" is the
share of points whose metric is at most 10 % over target (the overload side, which is what
scaling protects); the share within +-10 % both ways is reported beside it.
"""

from __future__ import annotations

import math
import random
import time
from datetime import timedelta

from django.utils import timezone

from bench import BenchResult, Figure, summary_ms
from bench.query import reset_history as reset_samples
from core.redis_client import get_redis
from monitoring import storage
from monitoring.selectors.series import series_latest
from scaling.models import ScaledService, ScalingDecision, ScalingRule
from scaling.services.evaluation import scaling_tick
from scaling.services.whatif import rule_replay

SERVICES = 1000
RULES = 3
HISTORY = 20
TICKS = 10
BASELINE_REPS = 10
TARGET_TICK_MS = 1000.0
TRACE_STEP = 15
TRACE_HOURS = 6
RECORDED_REPLICAS = 4
TARGET = 60.0


def _reset() -> None:
    ScaledService.objects.all().delete()
    reset_samples()  # bench.query's: every sample, rollup and series of the bench database
    client = get_redis()
    for key in client.scan_iter("perfpilot:lock:scale:*"):
        client.delete(key)


def _load_services() -> list[int]:
    now = timezone.now()
    specs = [
        storage.SeriesSpec("bench_scaling", {"service": str(s), "rule": str(r)})
        for s in range(SERVICES)
        for r in range(RULES)
    ]
    ids = storage.series_resolve(target_id=None, specs=specs)
    rng = random.Random(7)
    storage.samples_write([(sid, now - timedelta(seconds=5), rng.uniform(20, 90)) for sid in ids])
    template = ScaledService(executor_kind="webhook", enabled=True, dry_run=True, min_replicas=1, max_replicas=50)
    template.secrets = {"url": "http://127.0.0.1:9/never-called"}
    services = ScaledService.objects.bulk_create(
        [
            ScaledService(
                name=f"bench-{i:04d}",
                executor_kind="webhook",
                executor_secrets_encrypted=template.executor_secrets_encrypted,
                enabled=True,
                dry_run=True,
                min_replicas=1,
                max_replicas=50,
                applied_replicas=rng.randint(2, 10),
            )
            for i in range(SERVICES)
        ]
    )
    ScalingRule.objects.bulk_create(
        [
            ScalingRule(service=service, name=f"r{r}", source="series", series_id=ids[i * RULES + r], target_value=60)
            for i, service in enumerate(services)
            for r in range(RULES)
        ]
    )
    ScalingDecision.objects.bulk_create(
        [
            ScalingDecision(
                service=service,
                created_at=now - timedelta(seconds=15 * (h + 1)),
                result="unchanged",
                current_replicas=service.applied_replicas,
                recommended_replicas=service.applied_replicas,
                desired_replicas=service.applied_replicas,
                observed_replicas=service.applied_replicas,
            )
            for service in services
            for h in range(HISTORY)
        ],
        batch_size=5000,
    )
    return ids


def _trace(points: int) -> list[float]:
    """Load in replica-units x 100 %: the metric at n replicas is load / n."""
    rng = random.Random(42)
    bursts = []
    for _ in range(10):
        start = rng.randrange(0, points - 60)
        bursts.append((start, start + rng.randrange(8, 48), rng.uniform(2.0, 4.0)))
    load = []
    for i in range(points):
        base = 240 + 80 * math.sin(2 * math.pi * i / points)
        factor = max([m for s, e, m in bursts if s <= i < e], default=1.0)
        load.append(base * factor * rng.uniform(0.97, 1.03))
    return load


def _naive(recorded: list[float]) -> tuple[list[int], list[float]]:
    replicas, history, metrics = RECORDED_REPLICAS, [], []
    for value in recorded:
        metric = value * RECORDED_REPLICAS / replicas
        if metric > TARGET * 1.1:
            replicas = min(40, replicas + 1)
        elif metric < TARGET * 0.9:
            replicas = max(1, replicas - 1)
        history.append(replicas)
        metrics.append(value * RECORDED_REPLICAS / replicas)
    return history, metrics


def _scores(replicas: list[int], metrics: list[float]) -> tuple[int, float, float]:
    changes = sum(1 for a, b in zip([RECORDED_REPLICAS, *replicas], replicas, strict=False) if a != b)
    kept = sum(1 for m in metrics if m <= TARGET * 1.1) / len(metrics)
    both = sum(1 for m in metrics if abs(m - TARGET) <= TARGET * 0.1) / len(metrics)
    return changes, kept, both


def _replay() -> dict:
    points = TRACE_HOURS * 3600 // TRACE_STEP
    end = timezone.now().replace(microsecond=0)
    start = end - timedelta(seconds=points * TRACE_STEP)
    load = _trace(points)
    recorded = [value / RECORDED_REPLICAS for value in load]
    (series,) = storage.series_resolve(target_id=None, specs=[storage.SeriesSpec("bench_trace", {})])
    storage.samples_write([(series, start + timedelta(seconds=TRACE_STEP * i), v) for i, v in enumerate(recorded)])
    service = ScaledService.objects.create(name="bench-trace", executor_kind="webhook", min_replicas=1, max_replicas=40)
    rule = ScalingRule.objects.create(
        service=service, name="load", source="series", series_id=series, target_value=TARGET, enabled=False
    )
    started = time.perf_counter()
    replay = rule_replay(rule=rule, start=start, end=end + timedelta(seconds=1), start_replicas=RECORDED_REPLICAS)
    replay_ms = (time.perf_counter() - started) * 1000
    hpa_replicas = [s.replicas for s in replay.steps]
    hpa = _scores(hpa_replicas, [s.simulated_metric for s in replay.steps])
    naive = _scores(*_naive([s.metric for s in replay.steps]))
    return {"points": len(replay.steps), "hpa": hpa, "naive": naive, "replay_ms": replay_ms}


def run() -> BenchResult:
    _reset()
    print(f"loading {SERVICES} services x {RULES} rules and {SERVICES * HISTORY} past decisions…", flush=True)
    ids = _load_services()
    baseline, ticks = [], []
    for _ in range(BASELINE_REPS):
        started = time.perf_counter()
        series_latest(series_ids=ids, within=timedelta(minutes=2))
        baseline.append(time.perf_counter() - started)
    for _ in range(TICKS):
        started = time.perf_counter()
        result = scaling_tick()
        ticks.append(time.perf_counter() - started)
        assert result.evaluated == SERVICES, result
    tick_p50, tick_p95, _ = summary_ms(ticks)
    base_p50, _, _ = summary_ms(baseline)
    print("replaying the bursty trace…", flush=True)
    replay = _replay()
    hpa_changes, hpa_kept, hpa_both = replay["hpa"]
    naive_changes, naive_kept, naive_both = replay["naive"]
    _reset()
    return BenchResult(
        name="scaling",
        title="a beat tick over 1,000 services x 3 rules; HPA rules against a naive scaler on a bursty trace",
        setup=__doc__.split("\n", 2)[2],
        figures=(
            Figure(
                "Tick: 1,000 services x 3 rules, p50",
                f"{tick_p50:.0f} ms",
                f"< {TARGET_TICK_MS:.0f} ms",
                f"{base_p50:.0f} ms (metric reads alone, p50)",
                f"{tick_p50 / base_p50:.1f}x",
                tick_p50 < TARGET_TICK_MS,
            ),
            Figure("Tick p95", f"{tick_p95:.0f} ms", f"< {TARGET_TICK_MS:.0f} ms", passed=tick_p95 < TARGET_TICK_MS),
            Figure(
                f"Replica changes over {replay['points']} points (6 h)",
                f"{hpa_changes} (HPA rules)",
                "fewer than the naive scaler",
                f"{naive_changes} (naive threshold)",
                f"{hpa_changes / max(naive_changes, 1):.2f}x",
                hpa_changes < naive_changes,
            ),
            Figure(
                "Metric at most 10 % over target",
                f"{hpa_kept * 100:.1f} % (HPA rules)",
                ">= 95 %",
                f"{naive_kept * 100:.1f} % (naive threshold)",
                passed=hpa_kept >= 0.95,
            ),
            Figure(
                "Metric within +-10 % of target (both ways)",
                f"{hpa_both * 100:.1f} % (HPA rules)",
                baseline=f"{naive_both * 100:.1f} % (naive threshold)",
            ),
            Figure("What-if replay of the 6 h trace", f"{replay['replay_ms']:.0f} ms"),
        ),
        notes=(
            "Replica changes count every tick whose count differs from the one before. The HPA rules use the "
            "default behaviour (scale up at once by 100 % or 4 replicas per 15 s, scale down after a 300 s "
            "window), which is why they change far less often: they jump to the needed count in one or two "
            "steps and hold it through short dips, where the naive scaler walks one replica per tick and "
            "oscillates. The two-sided share is where the naive scaler does better: stabilization is paid for "
            "there, since after a burst the HPA rules keep the replicas for the 300 s scale-down window on purpose "
            "(the metric sits well under target meanwhile), and at 4-6 replicas one replica is a 15-25 % step, "
            "so holding +-10 % both ways needs the constant single-replica moves counted above."
        ),
    )
