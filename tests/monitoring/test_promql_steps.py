"""The range-query fast path (monitoring.promql.steps) answers exactly as step-by-step evaluation does."""

from __future__ import annotations

import math

import pytest

from monitoring.promql import steps
from monitoring.promql.engine import Evaluator, evaluate_range
from monitoring.promql.errors import PromQLError
from tests.conftest import perfpilot_remote_write
from tests.monitoring.test_promql import BASE_MS, CORPUS, _at, _conformance_series

# Beyond the conformance corpus: float counters with resets, long windows, nested aggregations.
EXTRA = [
    "increase(float_total[10m])",
    "rate(float_total[2m]) * 60",
    "sum_over_time(float_total[15m])",
    "avg_over_time(float_total[7m])",
    "stddev_over_time(float_total[9m])",
    "changes(float_total[10m])",
    "resets(float_total[30m])",
    "min_over_time(float_total[4m]) - max_over_time(float_total[4m])",
    "sum(sum by (instance) (rate(http_requests_total[5m])))",
    "avg by (instance) (float_total)",
    "min without (code) (http_requests_total)",
    "-sum(rate(float_total[5m])) / 0",
    "float_total >= 5",
    "time() / 60",
    "ceil(float_total - 5)",
    "sqrt(float_total - 5)",
    "count_over_time(temp[1m]) + irate(http_requests_total[1m])",
    "deriv(float_total[3m])",
    "predict_linear(float_total[6m] offset 1m, 120)",
    "predict_linear(temp[5m], time() / 1e6)",
    "histogram_quantile(0.75, rate(req_duration_seconds_bucket[1m]))",
    "histogram_quantile(0, req_duration_seconds_bucket offset 1m)",
    "histogram_quantile(1, sum without (instance) (req_duration_seconds_bucket))",
    "histogram_quantile(-1, req_duration_seconds_bucket)",
    'histogram_quantile(0.5, {__name__=~"req_duration_seconds_bucket|partial_bucket"})',
]


def _partial_histogram() -> list:
    """A histogram whose +Inf bucket misses some scrapes: at those steps it is evaluated sample by sample."""
    buckets = []
    for le, scale in (("1", 1.0), ("+Inf", 2.0)):
        samples = [(scale * i, _at(i * 20)) for i in range(120) if le == "1" or i % 30 < 12]
        buckets.append(({"__name__": "partial_bucket", "job": "x", "le": le}, samples))
    return buckets


def _float_counter() -> list:
    values, total = [], 0.0
    for i in range(300):  # every 9 s: a counter of fractional increments, reset three times
        total = total + 0.1 * (i % 7) + 1e-3 if i % 97 else 0.37 * (i % 3)
        values.append((total, _at(i * 9 + 0.25)))
    return [({"__name__": "float_total", "instance": "a"}, values)]


def _step_by_step(expression: str, **kwargs):
    original = steps.evaluate
    steps.evaluate = lambda evaluator, node: None
    try:
        return evaluate_range(expression, **kwargs)
    finally:
        steps.evaluate = original


def _identical(a: list, b: list) -> bool:
    if [labels for labels, _ in a] != [labels for labels, _ in b]:
        return False
    for (_, points_a), (_, points_b) in zip(a, b, strict=True):
        if len(points_a) != len(points_b):
            return False
        for (ta, va), (tb, vb) in zip(points_a, points_b, strict=True):
            same = (math.isnan(va) and math.isnan(vb)) or (va == vb and math.copysign(1, va) == math.copysign(1, vb))
            if ta != tb or not same:
                return False
    return True


@pytest.mark.parametrize("step_ms", [60_000, 7_000])
def test_every_step_at_once_answers_bit_identically_to_step_by_step(
    clean_samples, anonymous_client, operator_auth, step_ms
):
    perfpilot_remote_write(
        anonymous_client, operator_auth, _conformance_series() + _float_counter() + _partial_histogram()
    )
    params = {"start_ms": BASE_MS + 300_000, "end_ms": BASE_MS + 2_700_000, "step_ms": step_ms}
    differing = []
    for expression in [*CORPUS, *EXTRA]:
        try:
            fast = evaluate_range(expression, **params)
        except PromQLError as exc:
            fast = str(exc)
        try:
            slow = _step_by_step(expression, **params)
        except PromQLError as exc:
            slow = str(exc)
        if not (fast == slow if isinstance(fast, str) or isinstance(slow, str) else _identical(fast, slow)):
            differing.append(expression)
    assert differing == []


@pytest.mark.django_db
def test_the_fast_path_takes_whole_expressions_and_leaves_vector_matching_to_step_by_step():
    def whole(expression: str) -> bool:
        evaluator = Evaluator(expression, start_ms=BASE_MS, end_ms=BASE_MS + 600_000, step_ms=60_000)
        return evaluator.prepare_steps(evaluator.root) is not None

    assert whole("sum by (code) (rate(http_requests_total[5m])) * 2")
    assert whole("avg_over_time(node_mem_bytes[10m]) > bool 1000")
    assert not whole("http_requests_total / ignoring(code) group_left sum without (code) (http_requests_total)")
    assert whole("histogram_quantile(0.9, sum by (le) (rate(req_duration_seconds_bucket[5m])))")


def test_the_same_labels_twice_at_one_step_is_the_same_error_on_both_paths(
    clean_samples, anonymous_client, operator_auth
):
    copy = ({"__name__": "mem_copy", "job": "node", "instance": "a"}, [(1.0, _at(400))])
    perfpilot_remote_write(anonymous_client, operator_auth, [*_conformance_series(), copy])
    params = {"start_ms": BASE_MS + 300_000, "end_ms": BASE_MS + 900_000, "step_ms": 60_000}
    for evaluate in (evaluate_range, _step_by_step):
        with pytest.raises(PromQLError, match="same labelset"):
            evaluate('{__name__=~"node_mem_bytes|mem_copy"} * 1', **params)
