"""The Redis cache tuner against this machine's Redis 7 (our own db number and key prefix)."""

from __future__ import annotations

import os
import time

import pytest
import redis

from monitoring.services.targets import TargetInput, target_create
from optimizer.charts import before_after_data
from optimizer.models import OptimizationRun
from optimizer.services.runs import run_create, run_execute

REDIS_URL = "redis://127.0.0.1:6379/13"
PREFIX = f"pptest{os.getpid()}"


@pytest.fixture
def cache():
    client = redis.Redis.from_url(REDIS_URL)
    yield client
    for key in client.scan_iter(match=f"{PREFIX}*", count=500):
        client.unlink(key)
    client.close()


@pytest.fixture
def target(db):
    data = TargetInput(name=f"cache-{time.monotonic_ns()}", kind="redis", url=REDIS_URL, interval_seconds=10)
    return target_create(data=data, actor=None, via="system")


def _fill(cache) -> None:
    pipe = cache.pipeline()
    for i in range(300):
        pipe.set(f"{PREFIX}sess:{i}", "s" * 200)  # no TTL
    for i in range(100):
        pipe.set(f"{PREFIX}page:{i}", "p" * 2000, ex=600)
    pipe.set(f"{PREFIX}big", "b" * 100_000)
    pipe.execute()


def _run(target, *, dry_run=False, **params):
    params.setdefault("match", f"{PREFIX}*")
    run = run_create(tuner="cache", target=target, trigger="operator", actor=None, dry_run=dry_run, params=params)
    return run_execute(run_id=run.id)


def test_analysis_reports_namespaces_top_keys_ttl_and_idle_buckets(target, cache):
    _fill(cache)
    run = _run(target, scan_count=50)
    assert run.status == OptimizationRun.Status.SUCCEEDED, run.error
    analysis = run.evidence_before
    assert analysis["keys_scanned"] == 401
    spaces = {n["namespace"]: n for n in analysis["namespaces"]}
    assert spaces[f"{PREFIX}sess"]["keys"] == 300 and spaces[f"{PREFIX}sess"]["no_ttl"] == 300
    assert spaces[f"{PREFIX}page"]["bytes"] > spaces[f"{PREFIX}sess"]["bytes"] / 2
    assert analysis["top_keys"][0]["key"] == f"{PREFIX}big"
    assert analysis["ttl_buckets"] == {"no expiry": 301, "< 1 h": 100}
    assert analysis["idle_supported"] is True and sum(analysis["idle_buckets"].values()) == 401
    assert "memory_doctor" in analysis and analysis["bytes_used"] > 0


def test_ttl_policy_dry_run_changes_nothing_then_expires_ttl_less_keys(target, cache):
    _fill(cache)
    dry = _run(target, dry_run=True, ttl_namespaces={f"{PREFIX}sess": 3600})
    assert dry.statements == [{"statement": f"EXPIRE {PREFIX}sess:* 3600 (300 TTL-less keys)", "dry_run": True}]
    assert cache.ttl(f"{PREFIX}sess:1") == -1

    run = _run(target, ttl_namespaces={f"{PREFIX}sess": 3600})
    assert run.status == OptimizationRun.Status.SUCCEEDED, run.error
    assert 3590 <= cache.ttl(f"{PREFIX}sess:1") <= 3600
    assert cache.ttl(f"{PREFIX}big") == -1  # other namespaces untouched
    subject = f"ttl:{PREFIX}sess"
    assert run.evidence_before["actions"][subject]["without_ttl"] == 300
    assert run.evidence_after["actions"][subject]["without_ttl"] == 0


def test_idle_keys_past_the_namespace_policy_are_deleted_and_bytes_reclaimed_recorded(target, cache):
    _fill(cache)
    time.sleep(2.2)
    cache.get(f"{PREFIX}page:0")  # touched: not idle
    run = _run(target, idle_delete_namespaces={f"{PREFIX}page": 1})
    assert run.status == OptimizationRun.Status.SUCCEEDED, run.error
    assert cache.exists(f"{PREFIX}page:0") == 1
    assert cache.exists(f"{PREFIX}page:1") == 0
    subject = f"idle:{PREFIX}page"
    assert run.evidence_before["actions"][subject]["keys"] == 99
    assert run.evidence_after["actions"][subject] == {"keys": 0, "bytes": 0, "without_ttl": 0}
    chart = before_after_data(run)
    assert subject in chart.labels
    assert chart.after[chart.labels.index(subject)] == 0 and chart.before[chart.labels.index(subject)] > 0


def test_a_closed_port_fails_the_run_with_a_readable_error(db):
    data = TargetInput(name="closed-redis", kind="redis", url="redis://127.0.0.1:1/0", interval_seconds=10)
    run = _run(target_create(data=data, actor=None, via="system"))
    assert run.status == OptimizationRun.Status.FAILED
    assert "Redis at redis://127.0.0.1:1/0 failed the analysis" in run.error


def test_cache_report_and_page_show_the_latest_analysis(target, cache, anonymous_client, viewer_auth, viewer_client):
    _fill(cache)
    _run(target)
    response = anonymous_client.get(f"/api/v1/performance/cache/report?target={target.name}", **viewer_auth)
    assert response.status_code == 200, response.content
    assert response.json()["analysis"]["keys_scanned"] == 401
    page = viewer_client.get(f"/optimizer/cache/{target.id}/")
    assert page.status_code == 200
    assert f"{PREFIX}sess" in page.content.decode() and f"{PREFIX}big" in page.content.decode()
    wrong = anonymous_client.get("/api/v1/performance/cache/report?target=nope", **viewer_auth)
    assert wrong.status_code == 400 and wrong.json()["field"] == "target"


def test_high_fragmentation_runs_memory_purge_and_advises_activedefrag(target, cache):
    _fill(cache)
    # Thresholds at zero make any fragmentation "high": the purge runs for real on this Redis.
    run = _run(target, fragmentation_ratio=0.0, fragmentation_bytes=0)
    assert run.status == OptimizationRun.Status.SUCCEEDED, run.error
    assert run.evidence_before["fragmentation_high"] is True
    assert [s["statement"] for s in run.statements] == ["MEMORY PURGE"]
    assert run.evidence_after["actions"]["memory"]["bytes_used"] > 0
    from optimizer.models import Recommendation

    if run.evidence_before["activedefrag"] != "yes":
        advice = Recommendation.objects.get(target=target, title="Enable active defragmentation")
        assert advice.statement == "CONFIG SET activedefrag yes"


def test_cache_optimize_api_starts_dry_runs_and_benchmark_measures_redis(
    target, cache, anonymous_client, operator_auth
):
    body = {"targets": [target.name], "dry_run": True, "params": {"match": f"{PREFIX}*"}}
    response = anonymous_client.post("/api/v1/performance/cache/optimize", body, "application/json", **operator_auth)
    assert response.status_code == 202, response.content
    assert [r["tuner"] for r in response.json()] == ["cache"] and response.json()[0]["dry_run"] is True
    wrong = anonymous_client.post(
        "/api/v1/performance/database/optimize", {"targets": [target.name]}, "application/json", **operator_auth
    )
    assert wrong.status_code == 400 and "is not a postgres target" in wrong.json()["detail"]
    bench = anonymous_client.post(
        "/api/v1/performance/benchmark", {"target": target.name, "operations": 30}, "application/json", **operator_auth
    )
    assert bench.status_code == 200, bench.content
    assert bench.json()["write_p50_ms"] > 0
    assert not list(cache.scan_iter(match="perfpilot:benchmark:*"))  # its keys are removed


def test_the_cache_page_says_so_when_the_scan_found_no_keys(target, cache, viewer_client):
    run = _run(target, match=f"{PREFIX}-nothing-matches-*")
    assert run.status == OptimizationRun.Status.SUCCEEDED, run.error
    html = viewer_client.get(f"/optimizer/cache/{target.id}/").content.decode()
    namespaces = html[html.index('data-testid="namespaces"') :]
    assert "No keys found in the scan." in namespaces
    assert "No keys scanned, so no TTLs to count." in html[html.index('data-testid="ttl-buckets"') :]


def test_a_run_page_shows_evidence_as_a_table_with_units_and_why_after_is_empty(target, cache, viewer_client):
    _fill(cache)
    run = _run(target, dry_run=True)
    html = viewer_client.get(f"/optimizer/runs/{run.id}/").content.decode()
    evidence = html[html.index('data-testid="evidence"') :]
    bytes_used = evidence[evidence.index("<td>Bytes used</td>") :].split("</tr>")[0]
    assert bytes_used.rstrip().endswith(("KB</td>", "MB</td>"))  # a size, not 1234567
    assert "{" not in evidence.split("</section>")[0]  # no dict dump
    assert "Not measured after (dry run): nothing was changed." in evidence
