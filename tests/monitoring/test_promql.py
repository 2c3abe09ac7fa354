"""The PromQL engine and Prometheus's query API: hand-computed cases, and one conformance run
against a real Prometheus 2.42 fed the same remote-written samples."""

from __future__ import annotations

import json
import math
import random
import time
import urllib.parse
import urllib.request

import pytest
from django.db import connection

from monitoring.models import Series
from monitoring.promql.engine import evaluate_instant, evaluate_range
from monitoring.promql.errors import PromQLError
from tests.conftest import perfpilot_remote_write

BASE_MS = (int(time.time()) // 3600 - 2) * 3600 * 1000  # a whole hour, two to three hours ago


def _at(seconds: float) -> int:
    return BASE_MS + round(seconds * 1000)


def _vector(expression: str, seconds: float) -> dict[tuple, float]:
    kind, value = evaluate_instant(expression, time_ms=_at(seconds))
    assert kind == "vector"
    return {tuple(sorted(labels.items())): v for labels, v in value}


@pytest.fixture
def small_store(clean_samples, anonymous_client, operator_auth):
    """A counter every 10 s (0, 10, 20, ... with a reset to 5 at 60 s), two gauges, and a histogram."""
    counter = [
        (float(v), _at(t)) for t, v in zip(range(0, 110, 10), [0, 10, 20, 30, 40, 50, 5, 15, 25, 35, 45], strict=True)
    ]
    perfpilot_remote_write(
        anonymous_client,
        operator_auth,
        [
            ({"__name__": "req_total", "job": "api", "code": "200"}, counter),
            ({"__name__": "mem", "job": "api", "instance": "a"}, [(100.0, _at(0)), (300.0, _at(30))]),
            ({"__name__": "mem", "job": "api", "instance": "b"}, [(50.0, _at(0)), (70.0, _at(30))]),
            ({"__name__": "lat_bucket", "le": "0.1"}, [(10.0, _at(0))]),
            ({"__name__": "lat_bucket", "le": "1"}, [(30.0, _at(0))]),
            ({"__name__": "lat_bucket", "le": "+Inf"}, [(40.0, _at(0))]),
        ],
    )


@pytest.mark.usefixtures("small_store")
def test_an_instant_selector_takes_the_last_sample_within_five_minutes_and_matchers_are_anchored():
    assert _vector('mem{instance=~"a"}', 45) == {(("__name__", "mem"), ("instance", "a"), ("job", "api")): 300.0}
    assert _vector('mem{instance=~"a|b", instance!="b"}', 45) == _vector('mem{instance!~"b"}', 45)
    assert _vector('mem{instance=~"^"}', 45) == {}  # "^" anchored matches only the empty value
    assert len(_vector("mem", 30 + 300)) == 2  # exactly five minutes old: still seen (Prometheus 2.x)
    assert _vector("mem", 30 + 300.001) == {}
    assert _vector("mem offset 1m", 75) == _vector("mem", 15)


@pytest.mark.usefixtures("small_store")
def test_rate_and_increase_extrapolate_and_count_resets_as_prometheus_does():
    # req_total over [40, 100]: 40 50 5 15 25 35 45 -> 45 - 40 + 50 (the reset) = 55 over 60 s sampled,
    # at the window's edges (within 1.1 average intervals): extrapolated to the full 60 s.
    assert _vector("increase(req_total[1m])", 100) == {(("code", "200"), ("job", "api")): 55.0}
    assert _vector("rate(req_total[1m])", 100) == {(("code", "200"), ("job", "api")): 55.0 / 60}
    # [15, 75] holds 20..15 at 20..70 (a reset after 50): 50 sampled seconds, 5 s to either edge
    # (under 1.1 average intervals): extrapolated by 60/50.
    assert _vector("increase(req_total[1m])", 75)[(("code", "200"), ("job", "api"))] == pytest.approx(
        (15 - 20 + 50) * 60 / 50, rel=1e-12
    )
    assert _vector("irate(req_total[1m])", 65)[(("code", "200"), ("job", "api"))] == 5 / 10  # a reset: the new value
    assert _vector("delta(mem[1m])", 30)[(("instance", "a"), ("job", "api"))] == pytest.approx(200 * 60 / 30 / 1)


@pytest.mark.usefixtures("small_store")
def test_aggregations_binary_operators_and_functions():
    assert _vector("sum by (job) (mem)", 30) == {(("job", "api"),): 370.0}
    assert _vector("count without (instance) (mem)", 30) == {(("job", "api"),): 2.0}
    assert list(_vector("topk(1, mem)", 30)) == [(("__name__", "mem"), ("instance", "a"), ("job", "api"))]
    assert _vector("quantile(0.5, mem)", 30) == {(): 185.0}
    assert _vector("mem > 100", 30) == {(("__name__", "mem"), ("instance", "a"), ("job", "api")): 300.0}
    assert _vector("mem > bool 100", 30) == {
        (("instance", "a"), ("job", "api")): 1.0,
        (("instance", "b"), ("job", "api")): 0.0,
    }
    assert _vector("mem / on(job) group_left sum by (job) (mem)", 30) == {
        (("instance", "a"), ("job", "api")): 300 / 370,
        (("instance", "b"), ("job", "api")): 70 / 370,
    }
    assert _vector('mem and mem{instance="a"}', 30) == _vector('mem{instance="a"}', 30)
    assert _vector("histogram_quantile(0.5, lat_bucket)", 0) == {(): 0.1 + (1 - 0.1) * (20 - 10) / 20}
    assert (
        _vector('label_replace(mem, "host", "h-$1", "instance", "(.*)")', 30)[
            (("__name__", "mem"), ("host", "h-a"), ("instance", "a"), ("job", "api"))
        ]
        == 300.0
    )
    assert _vector("clamp_max(mem, 200)", 30)[(("instance", "a"), ("job", "api"))] == 200.0


@pytest.mark.usefixtures("small_store")
def test_a_range_query_evaluates_every_step_and_drops_what_the_lookback_no_longer_sees():
    result = evaluate_range('mem{instance="a"}', start_ms=_at(0), end_ms=_at(600), step_ms=60_000)
    ((labels, points),) = result
    assert labels["instance"] == "a"
    assert [(t - BASE_MS) // 1000 for t, _ in points] == [0, 60, 120, 180, 240, 300]
    assert [v for _, v in points] == [100.0, 300.0, 300.0, 300.0, 300.0, 300.0]


@pytest.mark.usefixtures("small_store")
def test_a_subquery_steps_at_multiples_of_its_step_and_at_pins_the_evaluation_time():
    kind, matrix = evaluate_instant('mem{instance="a"}[1m:20s]', time_ms=_at(45))
    ((series),) = matrix.series
    assert kind == "matrix"
    assert [(int(t) - BASE_MS) // 1000 for t in series.stamps] == [0, 20, 40]  # in [-15 s, 45 s], multiples of 20 s
    assert series.values.tolist() == [100.0, 100.0, 300.0]
    for at, value in (("start()", 100.0), ("end()", 300.0), (str(_at(10) / 1000), 100.0)):
        ((_, points),) = evaluate_range(f'mem{{instance="a"}} @ {at}', start_ms=_at(0), end_ms=_at(60), step_ms=30_000)
        assert [v for _, v in points] == [value] * 3


@pytest.mark.usefixtures("small_store")
def test_count_values_absent_and_sort():
    assert _vector('count_values("v", mem)', 30) == {(("v", "300"),): 1.0, (("v", "70"),): 1.0}
    assert _vector('absent(nothing{job="x", job="y", a="b", c=~"d"})', 30) == {(("a", "b"),): 1.0}
    assert _vector("absent(mem)", 30) == {}
    _, ascending = evaluate_instant("sort(mem)", time_ms=_at(30))
    _, descending = evaluate_instant("sort_desc(mem)", time_ms=_at(30))
    assert [labels["instance"] for labels, _ in ascending] == ["b", "a"]
    assert [labels["instance"] for labels, _ in descending] == ["a", "b"]


@pytest.mark.parametrize(
    ("expression", "named"),
    [
        ("histogram_count(mem)", "native histograms"),
        ("histogram_fraction(0, 1, mem)", "native histograms"),
        ("histogram_sum(mem)", "native histograms"),
        # Newer than Prometheus 2.42, though promql-parser knows them: 2.42 answers a 400.
        ("limitk(1, mem)", "limitk"),
        ("limit_ratio(0.5, mem)", "limit_ratio"),
        ("sort_by_label(mem, 'job')", "sort_by_label"),
        ("mad_over_time(mem[5m])", "mad_over_time"),
        ("double_exponential_smoothing(mem[5m], 0.5, 0.5)", "double_exponential_smoothing"),
        ("mem @ -100", "before 1970"),
    ],
)
@pytest.mark.django_db
def test_what_prometheus_2_42_does_not_evaluate_is_an_error_naming_it(expression, named):
    with pytest.raises(PromQLError, match=named):
        evaluate_instant(expression, time_ms=BASE_MS)


@pytest.mark.usefixtures("small_store")
def test_the_http_api_answers_in_prometheus_format_to_a_viewer(anonymous_client, viewer_auth):
    query = anonymous_client.get(
        "/prometheus/api/v1/query", {"query": "sum(mem)", "time": str((BASE_MS + 30_000) / 1000)}, **viewer_auth
    ).json()
    assert query == {
        "status": "success",
        "data": {"resultType": "vector", "result": [{"metric": {}, "value": [(BASE_MS + 30_000) // 1000, "370"]}]},
    }
    ranged = anonymous_client.post(
        "/prometheus/api/v1/query_range",
        {"query": "mem", "start": BASE_MS / 1000, "end": BASE_MS / 1000 + 60, "step": "30s"},
        **viewer_auth,
    ).json()
    assert ranged["data"]["resultType"] == "matrix" and len(ranged["data"]["result"]) == 2
    bad = anonymous_client.get("/prometheus/api/v1/query", {"query": "sum(", "time": "1"}, **viewer_auth)
    assert bad.status_code == 400 and bad.json()["errorType"] == "bad_data"
    labels = anonymous_client.get("/prometheus/api/v1/labels", **viewer_auth).json()["data"]
    assert {"__name__", "job", "instance", "le", "code"} <= set(labels)
    names = anonymous_client.get("/prometheus/api/v1/label/__name__/values", **viewer_auth).json()["data"]
    assert {"mem", "req_total", "lat_bucket"} <= set(names)
    series = anonymous_client.get("/prometheus/api/v1/series", {"match[]": "mem"}, **viewer_auth).json()["data"]
    assert [s["instance"] for s in series] == ["a", "b"]
    metadata = anonymous_client.get("/prometheus/api/v1/metadata", **viewer_auth).json()["data"]
    assert metadata["req_total"][0]["type"] == "counter"
    assert anonymous_client.get("/prometheus/api/v1/status/buildinfo", **viewer_auth).json()["data"]["version"]
    unauthenticated = anonymous_client.get("/prometheus/api/v1/query", {"query": "1"})
    assert unauthenticated.status_code == 401 and unauthenticated.json()["status"] == "error"


# --- conformance with a real Prometheus 2.42 ---------------------------------------------------------

CORPUS = [
    "http_requests_total",
    'http_requests_total{code="500"}',
    'http_requests_total{code!="500"}',
    'http_requests_total{instance=~"a|b", code!~"2.."}',
    "http_requests_total offset 3m",
    "rate(http_requests_total[1m])",
    "rate(http_requests_total[5m])",
    "irate(http_requests_total[2m])",
    "increase(http_requests_total[3m])",
    "delta(node_mem_bytes[5m])",
    "deriv(node_mem_bytes[5m])",
    "avg_over_time(node_mem_bytes[5m])",
    "min_over_time(node_mem_bytes[5m])",
    "max_over_time(node_mem_bytes[5m])",
    "sum_over_time(node_mem_bytes[2m])",
    "count_over_time(node_mem_bytes[2m])",
    "last_over_time(temp[10m])",
    "temp",
    "abs(node_mem_bytes - 1000)",
    "clamp_min(node_mem_bytes, 1000)",
    "clamp_max(node_mem_bytes, 1000)",
    "round(node_mem_bytes, 10)",
    "time()",
    "vector(1)",
    "scalar(sum(node_mem_bytes))",
    "histogram_quantile(0.9, rate(req_duration_seconds_bucket[5m]))",
    "histogram_quantile(0.5, sum by (le) (rate(req_duration_seconds_bucket[5m])))",
    'label_replace(node_mem_bytes, "host", "h-$1", "instance", "(.*)")',
    "sum(rate(http_requests_total[5m]))",
    "sum by (code) (rate(http_requests_total[5m]))",
    "sum without (instance) (http_requests_total)",
    "avg by (job) (node_mem_bytes)",
    "min(node_mem_bytes)",
    "max by (instance) (http_requests_total)",
    "count(http_requests_total)",
    "topk(2, http_requests_total)",
    "bottomk(1, node_mem_bytes)",
    "quantile(0.3, node_mem_bytes)",
    "node_mem_bytes * 2",
    "2 - node_mem_bytes",
    "node_mem_bytes > 1000",
    "1000 < bool node_mem_bytes",
    "http_requests_total / ignoring(code) group_left sum without (code) (http_requests_total)",
    "sum by (instance) (http_requests_total) / on(instance) group_right http_requests_total",
    'rate(http_requests_total{code="500"}[5m]) / ignoring(code) rate(http_requests_total{code="200"}[5m])',
    "http_requests_total > bool http_requests_total offset 1m",
    'http_requests_total and http_requests_total{code="200"}',
    "node_mem_bytes or temp",
    'http_requests_total unless on(instance) http_requests_total{instance="a"}',
    "-node_mem_bytes",
    "sum by (job) (http_requests_total) % 7",
    "node_mem_bytes ^ 0.5",
    "sum(http_requests_total) by (instance)",
    "avg(rate(http_requests_total[5m])) by (instance)",
    "topk by (code) (1, rate(http_requests_total[5m]))",
    "bottomk without (code) (1, http_requests_total)",
    "quantile by (instance) (0.9, http_requests_total)",
    "count without (code) (http_requests_total > 100)",
    'http_requests_total{code="200"} - on(instance) http_requests_total{code="500"}',
    "node_mem_bytes == bool on(instance, job) node_mem_bytes",
    'increase(req_duration_seconds_bucket{le="+Inf"}[5m])',
    "rate(http_requests_total[30s])",
    "deriv(http_requests_total[10m])",
    "idelta(node_mem_bytes[1m])",
    "max_over_time(temp[3m])",
    "count_over_time(temp[5m])",
    "temp offset 5m",
    '{__name__=~"node_.*"}',
    '{__name__="temp"} + 1',
    "abs(-temp)",
    "clamp(node_mem_bytes, 950, 1050)",
    "round(rate(http_requests_total[5m]), 0.01)",
    "scalar(temp)",
    "vector(time())",
    "time() - 1",
    "node_mem_bytes / 0",
    "node_mem_bytes / on() group_left sum(node_mem_bytes)",
    'label_replace(http_requests_total, "code", "", "code", "5..")',
    "histogram_quantile(0.99, sum by (le, instance) (rate(req_duration_seconds_bucket[5m])))",
    "exp(node_mem_bytes / 1000)",
    "ln(node_mem_bytes)",
    "sqrt(node_mem_bytes)",
    "ceil(node_mem_bytes)",
    "floor(node_mem_bytes)",
    "changes(temp[5m])",
    "predict_linear(node_mem_bytes[5m], 600)",
    "predict_linear(http_requests_total[10m], 3600)",
    'label_join(node_mem_bytes, "id", "/", "job", "instance")',
    'label_join(node_mem_bytes, "job", "", "missing")',
    "sgn(node_mem_bytes - 1000)",
    "resets(http_requests_total[10m])",
    "stddev_over_time(node_mem_bytes[5m])",
    "stdvar_over_time(node_mem_bytes[5m])",
    "quantile_over_time(0.9, node_mem_bytes[5m])",
    "stddev by (instance) (http_requests_total)",
    "stdvar(node_mem_bytes)",
    "group by (code) (http_requests_total)",
]

AT_10M, AT_16M = BASE_MS // 1000 + 600, (BASE_MS + 1_000_500) / 1000  # `@` times: ten minutes in, and with ms
CORPUS_AT_MODIFIER = [
    f"http_requests_total @ {AT_10M}",
    "http_requests_total @ start()",
    "node_mem_bytes @ end()",
    f"node_mem_bytes offset 2m @ {AT_16M}",
    f"node_mem_bytes - node_mem_bytes @ {AT_10M}",
    f"rate(http_requests_total[5m] @ {AT_10M})",
    "sum by (code) (rate(http_requests_total[5m] @ end()))",
    "increase(http_requests_total[3m] @ start())",
    f"max_over_time(temp[10m] @ {AT_16M})",
    f"timestamp(temp @ {AT_16M})",
    f"predict_linear(node_mem_bytes[5m] @ {AT_16M}, 600)",
    f"timestamp(node_mem_bytes offset 1m @ {AT_16M})",
    # Looked up at the @ time among the samples loaded for @ - offset: temp's sample at 1170 s is seen from
    # 1480 s - 3m = 1300 s, but is more than 5 minutes before 1480 s, so the right-hand side answers.
    f"timestamp(temp offset 3m @ {BASE_MS // 1000 + 1480}) or timestamp(temp @ {AT_16M})",
    "node_mem_bytes offset -1m",
    f"max_over_time((node_mem_bytes @ {AT_10M})[5m:1m])",
    f"sum_over_time(rate(http_requests_total[1m] @ {AT_10M})[5m:1m])",
    f"max_over_time(node_mem_bytes[5m:1m] @ {AT_16M} offset 1m)",
    "avg_over_time(node_mem_bytes[5m:1m] @ start())",
    f"holt_winters(node_mem_bytes[5m] @ {AT_10M}, 0.5, 0.5)",
    f"quantile_over_time(scalar(temp) / 100, node_mem_bytes[5m] @ {AT_10M})",
    "timestamp(timestamp(node_mem_bytes @ start()))",
    f"sum_over_time(timestamp(node_mem_bytes @ {AT_10M})[5m:1m])",
    f"time() - node_mem_bytes @ {AT_10M}",
    f"minute(node_mem_bytes @ {AT_10M} * 1000)",
    "absent(nonexistent @ start())",
    "rate(http_requests_total[5m:1m] @ end())",
    "sum_over_time(vector(time())[100s:7s])",
    'count_values("x", node_mem_bytes @ start())',
    f"predict_linear(node_mem_bytes[5m:1m] @ {AT_16M}, 600)",
    f"deriv(node_mem_bytes[5m] @ {AT_16M}) * time()",
    # Inside subqueries, and where Prometheus 2.42 reads an `@` range at moving times: the range argument of
    # a function evaluated at every step (predict_linear, or another argument that varies).
    f"max_over_time((node_mem_bytes @ {AT_10M})[5m:1m] offset 3m)",
    f"max_over_time(rate(http_requests_total[2m] @ {AT_10M})[5m:1m] offset 3m)",
    f"max_over_time((node_mem_bytes @ {AT_10M} offset 1m)[5m:1m] @ {AT_16M} offset 3m)",
    f"max_over_time(max_over_time((node_mem_bytes @ {AT_10M})[5m:1m] offset 2m)[5m:1m] offset 3m)",
    f"max_over_time(predict_linear(node_mem_bytes[5m] @ {AT_10M}, 60)[5m:1m] @ {AT_16M})",
    f"max_over_time(predict_linear(node_mem_bytes[5m] @ {AT_10M}, 60)[5m:1m])",
    f"max_over_time(predict_linear(node_mem_bytes[5m] @ {AT_10M}, 60)[5m:1m] offset 1m)",
]
CORPUS_SUBQUERIES = [
    "max_over_time(rate(http_requests_total[1m])[5m:30s])",
    "avg_over_time(node_mem_bytes[10m:1m])",
    "rate(http_requests_total[5m:])",
    "min_over_time(sum by (instance) (node_mem_bytes)[7m:45s] offset 3m)",
    f"sum_over_time(node_mem_bytes[5m:20s] @ {AT_10M})",
    "max_over_time(deriv(node_mem_bytes[2m])[10m:1m] @ end())",
    "max_over_time(avg_over_time(node_mem_bytes[3m:30s])[10m:1m])",
    "count_over_time(temp[15m:1m])",
    "last_over_time(http_requests_total[3m:17s])",
    "stddev_over_time(rate(http_requests_total[2m])[10m:2m])",
    'absent_over_time(nonexistent{job="x"}[5m:1m])',
    "max_over_time(node_mem_bytes[2m:7m])",  # a step longer than the range: some windows hold no step
    "rate(http_requests_total[5m:1m] offset -1m)",
    "quantile_over_time(0.5, node_mem_bytes[10m:30s])",
    "holt_winters(node_mem_bytes[10m:1m], 0.4, 0.6)",
    "irate(http_requests_total[3m:20s])",
    "deriv(rate(http_requests_total[1m])[10m:1m])",
    f"max_over_time(sum(rate(http_requests_total[1m] @ {AT_16M}))[5m:])",
]
CORPUS_FUNCTIONS = [
    'absent(nonexistent{job="x", code=~"5..", job="y"})',
    "absent(temp)",
    "absent_over_time(temp[3m])",
    'absent_over_time(nonexistent{job="x"}[5m])',
    "present_over_time(temp[3m])",
    'count_values("value", floor(node_mem_bytes / 100))',
    'count_values by (instance) ("above", http_requests_total > bool 2000)',
    'count_values without (instance) ("v", ceil(rate(http_requests_total[5m])))',
    'count_values("le", req_duration_seconds_bucket)',  # the value label replaces one of the same name
    'absent({__name__=~"nothing", job="a"})',
    "sort(node_mem_bytes / 0 * 0)",
    "sort(node_mem_bytes)",
    "sort_desc(rate(http_requests_total[5m]))",
    "timestamp(node_mem_bytes)",
    "timestamp(temp offset 1m)",
    "timestamp(sum(node_mem_bytes))",
    "day_of_month()",
    "day_of_week()",
    "day_of_year()",
    "days_in_month()",
    "hour()",
    "minute()",
    "month()",
    "year()",
    "day_of_month(node_mem_bytes * 1e6)",
    "day_of_week(node_mem_bytes * 1e6)",
    "day_of_year(node_mem_bytes * 1e6)",
    "days_in_month(node_mem_bytes * 3e5)",
    "hour(node_mem_bytes * 1000)",
    "minute(timestamp(node_mem_bytes))",
    "month(node_mem_bytes * 1e6)",
    "year(node_mem_bytes * 1e7)",
    "year(node_mem_bytes / 0 * 0) + hour(-node_mem_bytes / 0)",  # NaN and -Inf: read as Go on amd64 reads them
    "sin(node_mem_bytes) + cos(node_mem_bytes) + tan(node_mem_bytes / 1000)",
    "asin(node_mem_bytes / 2000) + acos(node_mem_bytes / 2000) + atan(node_mem_bytes)",
    "sinh(node_mem_bytes / 1000) + cosh(node_mem_bytes / 1000) + tanh(node_mem_bytes / 1000)",
    "asinh(node_mem_bytes) + acosh(node_mem_bytes) + atanh(node_mem_bytes / 2000)",
    "asin(node_mem_bytes)",
    "acosh(node_mem_bytes / 2000)",
    "deg(node_mem_bytes) + rad(node_mem_bytes)",
    "pi()",
    "log2(node_mem_bytes) + log10(node_mem_bytes)",
    "holt_winters(node_mem_bytes[10m], 0.3, 0.7)",
    "holt_winters(http_requests_total[5m], 0.5, 0.1)",
    "round(node_mem_bytes, 0) + round(node_mem_bytes, scalar(temp) / 10)",  # 1/0 is +Inf, 0/0 NaN, as in Go
    "stddev(node_mem_bytes)",
    "stdvar by (instance) (http_requests_total)",
    "stddev without (instance) (rate(http_requests_total[5m]))",
    "stddev(temp) + stdvar(temp)",
    "group(node_mem_bytes)",
    "stddev(node_mem_bytes / 0) or stdvar(-node_mem_bytes / 0 * 0)",
    "avg(node_mem_bytes / 0) + max(node_mem_bytes / 0 * 0)",
    "quantile(-0.5, node_mem_bytes) + quantile(1.5, node_mem_bytes)",
    "quantile(scalar(nonexistent), node_mem_bytes)",
    "quantile(0.5, node_mem_bytes / 0 * 0)",
    "quantile_over_time(2, node_mem_bytes[5m]) + quantile_over_time(-1, node_mem_bytes[5m])",
    "topk(scalar(sum(node_mem_bytes)) / 1000 - 1, node_mem_bytes) or bottomk(-1, node_mem_bytes)",  # k 0 or 1; < 0
    "sort(sum by (instance) (http_requests_total))",
    "timestamp(vector(1))",
    "absent(sum(nonexistent))",
    "present_over_time(rate(http_requests_total[1m])[5m:1m])",
    "sgn(node_mem_bytes - node_mem_bytes) + sgn(-node_mem_bytes)",
    "deg(vector(pi())) + rad(vector(180))",
    'count_values("v", temp)',
    "stddev_over_time(temp[10m]) + stdvar_over_time(temp[10m])",
    "last_over_time(node_mem_bytes[1m] offset 1m)",
    "holt_winters(temp[10m], 0.1, 0.9)",
    "hour(-node_mem_bytes * 1000) + year(-node_mem_bytes * 1e7) + day_of_week(-node_mem_bytes * 1e5)",
    "days_in_month(node_mem_bytes * 1e7) + day_of_year(node_mem_bytes * 3e7)",
    "avg_over_time((node_mem_bytes / 0)[5m:1m]) + stddev_over_time((node_mem_bytes / 0)[5m:1m])",
    'label_join(node_mem_bytes, "__name__", "", "instance")',
    "node_mem_bytes atan2 1000 + sin(node_mem_bytes / 0)",
    "bottomk(1, sort_desc(node_mem_bytes))",
    # Not here: topk/bottomk over ties of NaN. Prometheus keeps the series its storage gives first, and
    # which of two series created by one remote write that is varied from run to run of the same test.
    "quantile_over_time(scalar(nonexistent), node_mem_bytes[5m])",
    "absent_over_time(node_mem_bytes[1m] offset 1h)",
    "timestamp(rate(http_requests_total[5m])) - time()",
    "sort_desc(node_mem_bytes) * 2",
    'label_replace(sum(node_mem_bytes), "x", "y", "", "")',
    "days_in_month(vector(1709164800)) + day_of_year(vector(1709164800)) + day_of_week(vector(1709164800))",
    "stdvar_over_time(http_requests_total[1m:10s])",
    "holt_winters(node_mem_bytes[1m], 0.9, 0.1)",
    "present_over_time(nonexistent[5m]) or vector(0)",
    "group without (instance) (node_mem_bytes) * 3",
    'count_values without (instance) ("c", node_mem_bytes > bool 1000)',
    "minute(vector(time() - 0.5)) + hour(vector(-0.5))",
    "sum_over_time(node_mem_bytes[5m:1m] @ end() offset 1m)",
    "rate(http_requests_total[5m] @ end() offset 10m)",
    'count_values("v", round(rate(http_requests_total[1m]) * 10))',
    "abs(node_mem_bytes @ start() - node_mem_bytes @ end())",
    "avg_over_time(timestamp(node_mem_bytes)[5m:30s])",
    'absent(node_mem_bytes{instance="zzz"} offset 5m)',
    "max_over_time(absent(nonexistent)[5m:1m])",
    "holt_winters(rate(http_requests_total[2m])[10m:1m], 0.2, 0.3)",
    "last_over_time(node_mem_bytes[5m] @ start())",
    "day_of_month(timestamp(node_mem_bytes @ end()))",
    "quantile(0.5, node_mem_bytes @ start()) - quantile(0.5, node_mem_bytes)",
    "stddev by (code) (rate(http_requests_total[5m] @ end()))",
    'count_values("v", node_mem_bytes / 0 * 0) or count_values("v", -node_mem_bytes / 0)',
]

CORPUS_EXECUTION_ERRORS = [
    "topk(scalar(nonexistent), node_mem_bytes)",  # k NaN
    "bottomk(1e20, node_mem_bytes)",
    "holt_winters(node_mem_bytes[5m], 1, 0.5)",
    "holt_winters(node_mem_bytes[5m], 0.5, 0)",
    'count_values("1x", node_mem_bytes)',
    "node_mem_bytes + on(job) group_left node_mem_bytes",
    'label_replace(node_mem_bytes, "1x", "$1", "instance", "(.*)")',
    'label_replace(node_mem_bytes, "x", "$1", "instance", "(.*")',
    'label_join(node_mem_bytes, "1x", "-", "instance")',
    'label_join(node_mem_bytes, "x", "-", "1instance")',
    "node_mem_bytes + on(job) node_mem_bytes",
    "sum by (instance) (http_requests_total) + on(instance) group_left http_requests_total",
    'label_replace(node_mem_bytes, "instance", "x", "", "")',
]


def _conformance_series() -> list:
    rng = random.Random(17)
    series = []
    for instance in ("a", "b"):
        for code in ("200", "500"):
            total, samples = 0.0, []
            for i in range(180):  # every 15 s with jitter, 45 minutes
                total += rng.randint(0, 40)
                if instance == "a" and code == "500" and i == 80:
                    total = rng.randint(0, 5)  # a counter reset
                samples.append((total, _at(i * 15 + rng.uniform(-2, 2))))
            series.append(
                ({"__name__": "http_requests_total", "job": "api", "instance": instance, "code": code}, samples)
            )
        value, samples = 1000.0, []
        for i in range(270):  # every 10 s
            value += rng.uniform(-50, 50)
            samples.append((round(value, 3), _at(i * 10 + 0.5)))
        series.append(({"__name__": "node_mem_bytes", "job": "node", "instance": instance}, samples))
        counts = [0.0, 0.0, 0.0, 0.0]
        bucket_samples: list[list] = [[], [], [], []]
        for i in range(180):
            observed = [rng.randint(0, 10) for _ in range(4)]
            running = 0.0
            for b in range(4):
                running += observed[b]
                counts[b] += running
                bucket_samples[b].append((counts[b], _at(i * 15 + 1)))
        for le, samples in zip(("0.1", "0.5", "1", "+Inf"), bucket_samples, strict=True):
            series.append(
                ({"__name__": "req_duration_seconds_bucket", "job": "api", "instance": instance, "le": le}, samples)
            )
    # A gauge that stops reporting for ten minutes: the lookback must let it go after five.
    series.append(
        ({"__name__": "temp", "instance": "a"}, [(20.0 + i % 7, _at(i * 30)) for i in range(90) if not 40 <= i < 60])
    )
    return series


def _matrix(result: list) -> dict[tuple, list[tuple[float, float]]]:
    return {tuple(sorted(s["metric"].items())): [(float(t), float(v)) for t, v in s["values"]] for s in result}


def _instant(data: dict) -> tuple[str, dict[tuple, list[tuple[float, float]]]]:
    """An instant query's answer in the shape of a range query's, with its result type."""
    kind, result = data["resultType"], data["result"]
    if kind == "scalar":
        return kind, {(): [(float(result[0]), float(result[1]))]}
    if kind == "vector":
        return kind, _matrix([{"metric": s["metric"], "values": [s["value"]]} for s in result])
    return kind, _matrix(result)


def _same(ours: dict, theirs: dict) -> str | None:
    if ours.keys() != theirs.keys():
        return f"labels differ: ours {sorted(ours)} theirs {sorted(theirs)}"
    for key, points in theirs.items():
        mine = ours[key]
        if [t for t, _ in mine] != [t for t, _ in points]:
            return f"timestamps differ for {key}"
        for (t, a), (_, b) in zip(mine, points, strict=True):
            if not (math.isnan(a) and math.isnan(b)) and not math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12):
                return f"{key} at {t}: ours {a!r} theirs {b!r}"
    return None


def test_query_range_answers_as_prometheus_does_over_the_same_remote_written_samples(
    clean_samples, anonymous_client, operator_auth, viewer_auth, real_prometheus
):
    series = _conformance_series()
    perfpilot_remote_write(anonymous_client, operator_auth, series)
    real_prometheus.write(series)
    url = real_prometheus.url
    params = {"start": (BASE_MS + 300_000) / 1000, "end": (BASE_MS + 2_700_000) / 1000, "step": "60"}
    mismatches = {}
    for expression in [*CORPUS, *CORPUS_AT_MODIFIER, *CORPUS_SUBQUERIES, *CORPUS_FUNCTIONS]:
        query = urllib.parse.urlencode({**params, "query": expression})
        with urllib.request.urlopen(f"{url}/api/v1/query_range?{query}", timeout=10) as response:
            theirs = json.load(response)
        ours = anonymous_client.get("/prometheus/api/v1/query_range", {**params, "query": expression}, **viewer_auth)
        assert ours.status_code == 200, (expression, ours.content)
        assert theirs["data"]["result"], f"Prometheus has no data for {expression}: the corpus tests nothing"
        problem = _same(_matrix(ours.json()["data"]["result"]), _matrix(theirs["data"]["result"]))
        if problem:
            mismatches[expression] = problem
    # The same corpus as instant queries at a time between two samples, and a range selector.
    at = {"time": (BASE_MS + 1_234_567) / 1000}
    for expression in [
        *CORPUS,
        *CORPUS_AT_MODIFIER,
        *CORPUS_SUBQUERIES,
        *CORPUS_FUNCTIONS,
        "http_requests_total[2m]",
        "node_mem_bytes[1m] offset 2m",
        f"node_mem_bytes[3m] @ {AT_10M}",
        "node_mem_bytes[5m:1m]",
        f"rate(http_requests_total[1m])[4m:45s] @ {AT_16M}",
    ]:
        query = urllib.parse.urlencode({**at, "query": expression})
        with urllib.request.urlopen(f"{url}/api/v1/query?{query}", timeout=10) as response:
            their_kind, theirs = _instant(json.load(response)["data"])
        answer = anonymous_client.get("/prometheus/api/v1/query", {**at, "query": expression}, **viewer_auth)
        assert answer.status_code == 200, (expression, answer.content)
        our_kind, ours = _instant(answer.json()["data"])
        problem = f"{our_kind} is not {their_kind}" if our_kind != their_kind else _same(ours, theirs)
        if problem:
            mismatches[f"instant {expression}"] = problem
    # What Prometheus fails at execution (a 422), ours fails with the same status, type and words.
    for path, expression in [(path, e) for e in CORPUS_EXECUTION_ERRORS for path in ("query", "query_range")]:
        query = {**(at if path == "query" else params), "query": expression}
        try:
            urllib.request.urlopen(f"{url}/api/v1/{path}?{urllib.parse.urlencode(query)}", timeout=10).close()
            their_status, their_error = 200, "Prometheus answered: the corpus tests nothing"
        except urllib.error.HTTPError as error:
            their_status, their_error = error.code, json.load(error)
        answer = anonymous_client.get(f"/prometheus/api/v1/{path}", query, **viewer_auth)
        if (answer.status_code, answer.json()) != (their_status, their_error):
            mismatches[f"{path} {expression}"] = f"ours {answer.status_code} {answer.json()} theirs {their_error}"
    assert mismatches == {}, json.dumps(mismatches, indent=1)


@pytest.mark.usefixtures("clean_samples")
def test_older_than_the_raw_retention_each_rollup_bucket_reads_as_its_average_at_its_middle(settings):
    series = Series.objects.create(metric="old_gauge", labels={"job": "x"}, labels_key="job=x")
    minute = (int(time.time()) // 60 - (settings.RETENTION_RAW_DAYS + 1) * 1440) * 60  # a day past the raw retention
    with connection.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO monitoring_rollup_1m VALUES (%s, to_timestamp(%s), %s, %s, %s, %s)",
            [(series.id, minute + 60 * i, 0.0, 10.0, 10.0 * i, 2) for i in range(5)],  # averages 0, 5, 10, 15, 20
        )
    _, value = evaluate_instant("avg_over_time(old_gauge[5m])", time_ms=(minute + 300) * 1000)
    assert value == [({"job": "x"}, 10.0)]
    _, value = evaluate_instant("old_gauge", time_ms=(minute + 95) * 1000)
    assert value == [({"__name__": "old_gauge", "job": "x"}, 5.0)]  # the second bucket, read at minute + 90 s


@pytest.mark.usefixtures("small_store")
def test_grafana_datasource_requests_are_answered(anonymous_client, viewer_auth):
    """What Grafana's Prometheus datasource sends: Save & test, the query builder's lists, a panel."""
    start, end = str(BASE_MS / 1000 - 60), str(BASE_MS / 1000 + 600)
    health = anonymous_client.post("/prometheus/api/v1/query", {"query": "1+1", "time": end}, **viewer_auth).json()
    assert health["data"] == {"resultType": "scalar", "result": [float(end), "2"]}
    metrics = anonymous_client.get(
        "/prometheus/api/v1/label/__name__/values", {"start": start, "end": end}, **viewer_auth
    ).json()
    assert metrics == {"status": "success", "data": ["lat_bucket", "mem", "req_total"]}
    labels = anonymous_client.post(
        "/prometheus/api/v1/labels", {"match[]": "mem", "start": start, "end": end}, **viewer_auth
    ).json()
    assert labels["data"] == ["__name__", "instance", "job"]
    values = anonymous_client.get(
        "/prometheus/api/v1/label/instance/values", {"match[]": '{__name__="mem"}'}, **viewer_auth
    ).json()
    assert values["data"] == ["a", "b"]
    panel = anonymous_client.post(
        "/prometheus/api/v1/query_range",
        {"query": "sum by (instance) (mem)", "start": start, "end": end, "step": "60"},
        **viewer_auth,
    ).json()
    assert [s["metric"] for s in panel["data"]["result"]] == [{"instance": "a"}, {"instance": "b"}]


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"query": "mem[5m]", "start": "1", "end": "2", "step": "1"}, 'invalid expression type "range vector"'),
        ({"query": "mem", "start": "1", "end": "2", "step": "x"}, 'invalid parameter "step"'),
        ({"query": "mem", "start": "0", "end": "100000", "step": "1"}, "exceeded maximum resolution"),
        ({"query": "rate(mem)", "time": "1"}, "expected type matrix"),
    ],
)
@pytest.mark.usefixtures("small_store")
def test_bad_queries_are_400s_in_prometheus_error_format(anonymous_client, viewer_auth, params, error):
    path = "/prometheus/api/v1/query_range" if "step" in params else "/prometheus/api/v1/query"
    if "time" in params:
        params = {**params, "time": str(BASE_MS / 1000 + 30)}
    answer = anonymous_client.get(path, params, **viewer_auth)
    assert answer.status_code == 400
    body = answer.json()
    assert body["status"] == "error" and body["errorType"] == "bad_data"
    assert error in body["error"]


def test_only_series_with_samples_in_the_range_count_against_the_series_limit(
    small_store, anonymous_client, operator_auth, viewer_auth, settings
):
    # An instance that came an hour later: its series is matched but has nothing at the first query time.
    perfpilot_remote_write(
        anonymous_client, operator_auth, [({"__name__": "mem", "job": "api", "instance": "c"}, [(9.0, _at(3600))])]
    )
    settings.PROMQL_MAX_SERIES = 1
    early = {"query": 'sum(mem{instance=~"a|c"})', "time": str((BASE_MS + 30_000) / 1000)}
    answer = anonymous_client.get("/prometheus/api/v1/query", early, **viewer_auth)
    assert answer.status_code == 200, answer.content
    assert answer.json()["data"]["result"][0]["value"][1] == "300"
    late = {**early, "time": str((BASE_MS + 3_630_000) / 1000)}
    assert (
        anonymous_client.get("/prometheus/api/v1/query", late, **viewer_auth).json()["data"]["result"][0]["value"][1]
        == "9"
    )
    both = {**early, "query": 'sum(mem{instance=~"a|b|c"})'}
    refused = anonymous_client.get("/prometheus/api/v1/query", both, **viewer_auth)
    assert refused.status_code == 422 and "2 series with samples in the range" in refused.json()["error"]


@pytest.mark.usefixtures("small_store")
def test_a_selector_over_too_many_series_is_a_422_execution_error(anonymous_client, viewer_auth, settings):
    settings.PROMQL_MAX_SERIES = 1  # mem has two series (instances a and b)
    params = {"query": "sum(mem)", "time": str((BASE_MS + 30_000) / 1000)}
    answer = anonymous_client.get("/prometheus/api/v1/query", params, **viewer_auth)
    assert answer.status_code == 422 and answer.json()["errorType"] == "execution"
    assert "PERFPILOT_PROMQL_MAX_SERIES" in answer.json()["error"]
    one = anonymous_client.get("/prometheus/api/v1/query", {**params, "query": 'mem{instance="a"}'}, **viewer_auth)
    assert one.status_code == 200


@pytest.mark.usefixtures("small_store")
def test_a_query_reading_samples_past_the_timeout_is_a_503_timeout(
    anonymous_client, viewer_auth, settings, monkeypatch
):
    from monitoring.promql import data

    settings.PROMQL_TIMEOUT_SECONDS = 1
    # The same read, made to outlast the timeout as a read over months of samples would.
    monkeypatch.setattr(data, "_SAMPLES_SQL", f"SELECT q.* FROM ({data._SAMPLES_SQL}) q, pg_sleep(3)")
    answer = anonymous_client.get(
        "/prometheus/api/v1/query", {"query": "mem", "time": str((BASE_MS + 30_000) / 1000)}, **viewer_auth
    )
    assert answer.status_code == 503 and answer.json()["errorType"] == "timeout"
