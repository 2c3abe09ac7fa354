"""Hot/cold keys and compressible values of the cache tuner, against private redis-servers (LFU and LRU)."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import time

import pytest
import redis

from monitoring.services.targets import TargetInput, target_create
from optimizer.models import OptimizationRun, Recommendation
from optimizer.services.runs import run_create, run_execute
from optimizer.tuners.cachekeys import namespace_of
from tests.conftest import free_port

DAY = 86400


@pytest.fixture(scope="module")
def redis_servers(tmp_path_factory):
    """Start private redis-servers on free ports, one per eviction policy asked for; kill them at the end."""
    started: dict[str, tuple[subprocess.Popen, redis.Redis, str]] = {}

    def server(policy: str) -> tuple[redis.Redis, str]:
        if policy not in started:
            port = free_port()
            flags = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
            flags += ["--dir", str(tmp_path_factory.mktemp(f"redis-{policy}")), "--maxmemory-policy", policy]
            binary = shutil.which("redis-server") or "/usr/bin/redis-server"
            process = subprocess.Popen([binary, *flags], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            client = redis.Redis(port=port)
            for _ in range(100):
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    time.sleep(0.05)
            started[policy] = (process, client, f"redis://127.0.0.1:{port}/0")
        _, client, url = started[policy]
        client.flushdb()
        return client, url

    yield server
    for process, client, _ in started.values():
        client.close()
        process.kill()
        process.wait()


def _target(redis_servers, policy: str):
    client, url = redis_servers(policy)
    return client, target_create(data=TargetInput(name=policy, kind="redis", url=url), actor=None, via="system")


@pytest.fixture
def lfu(redis_servers, db):
    return _target(redis_servers, "allkeys-lfu")


@pytest.fixture
def lru(redis_servers, db):
    return _target(redis_servers, "allkeys-lru")


def _run(target, **params):
    run = run_create(tuner="cache", target=target, trigger="operator", actor=None, dry_run=True, params=params)
    run = run_execute(run_id=run.id)
    assert run.status == OptimizationRun.Status.SUCCEEDED, run.error
    return run


def _restore(client, key: str, value: bytes, *options) -> None:
    """Store `value` under `key` with a chosen access history (RESTORE ... FREQ n / IDLETIME s)."""
    client.set("scratch", value)
    payload = client.dump("scratch")
    client.delete("scratch")
    client.execute_command("RESTORE", key, 0, payload, "REPLACE", *options)


def _json_value(i: int) -> bytes:
    rows = [{"id": i * 100 + n, "status": "active", "country": "FR", "tags": ["a", "b"]} for n in range(60)]
    return json.dumps({"user": i, "rows": rows}).encode()


def test_namespace_is_the_key_up_to_the_first_of_the_separators():
    assert namespace_of(b"sess:42:x") == "sess"
    assert namespace_of(b"plain") == "(none)"
    assert namespace_of(b"api/v1:users", ":/") == "api"
    assert namespace_of(b"a:b/c", "/") == "a:b"


def test_under_lfu_the_key_read_a_thousand_times_ranks_first_and_freq_zero_keys_are_cold(lfu):
    client, target = lfu
    for i in range(50):
        client.set(f"page:{i}", "p" * 300)
    for _ in range(10):
        pipe = client.pipeline(transaction=False)
        for _ in range(100):
            pipe.get("page:7")
        pipe.execute()
    for i in range(3):
        _restore(client, f"old:{i}", b"o" * (2000 * (i + 1)), "FREQ", 0)

    run = _run(target)
    access = run.evidence_before["key_access"]
    assert access["lfu"] is True and access["note"] == "" and access["sampled_keys"] == 53
    assert access["hot_keys"][0]["key"] == "page:7" and access["hot_keys"][0]["namespace"] == "page"
    assert access["hot_keys"][0]["freq"] > access["hot_keys"][1]["freq"]
    assert [k["key"] for k in access["cold_keys"]] == ["old:2", "old:1", "old:0"]  # largest first
    spaces = {n["namespace"]: n for n in access["namespaces"]}
    assert spaces["old"]["cold_keys"] == 3 and spaces["old"]["cold_bytes"] >= 12_000
    assert spaces["page"]["cold_keys"] == 0 and spaces["page"]["max_freq"] == access["hot_keys"][0]["freq"]
    assert not Recommendation.objects.filter(target=target, title__contains="access frequency").exists()


def test_under_lru_the_analysis_says_redis_cannot_count_accesses_and_reports_idle_cold_keys(lru):
    client, target = lru
    client.set("sess:1", "fresh")
    _restore(client, "sess:2", b"s" * 5000, "IDLETIME", 8 * DAY)

    run = _run(target)
    access = run.evidence_before["key_access"]
    assert access["lfu"] is False and access["hot_keys"] == []
    assert "cannot tell hot keys" in access["note"] and "allkeys-lfu" in access["note"]
    assert "no hot keys: allkeys-lru counts no accesses" in run.summary
    assert [(k["key"], k["idle_seconds"] >= 8 * DAY) for k in access["cold_keys"]] == [("sess:2", True)]
    advice = Recommendation.objects.get(target=target, title__contains="allkeys-lfu")
    assert advice.statement == ""  # no Apply: the operator changes the policy by hand
    assert advice.evidence["manual_statements"] == ["CONFIG SET maxmemory-policy allkeys-lfu"]


def test_compressible_json_values_report_savings_and_random_bytes_report_next_to_none(lfu):
    client, target = lfu
    rng = random.Random(7)
    for i in range(40):
        client.set(f"json:{i}", _json_value(i))
        client.set(f"rand:{i}", rng.randbytes(4096))
    client.set("tiny:1", "x" * 100)  # under compress_min_bytes

    run = _run(target, compress_min_saving_bytes=10_000)
    compression = run.evidence_before["compression"]
    spaces = {n["namespace"]: n for n in compression["namespaces"]}
    assert set(spaces) == {"json", "rand"}
    data = spaces["json"]
    zstd = data["codecs"]["zstd"]
    assert data["sampled_keys"] == 40 and data["large_keys"] == 40 and data["keys"] == 40
    assert data["codecs"]["zstd"]["ratio"] > 3 and data["codecs"]["lz4"]["ratio"] > 2
    assert zstd["saved"] > data["sampled_bytes"] / 2 and zstd["estimated_saved"] >= zstd["saved"]
    noise = spaces["rand"]
    assert noise["sampled_bytes"] == 40 * 4096 and noise["codecs"]["zstd"]["saved"] < noise["sampled_bytes"] * 0.02
    assert any("Only string values" in note for note in compression["notes"])
    titles = set(Recommendation.objects.filter(target=target).values_list("title", flat=True))
    assert "Compress the values of namespace json client-side" in titles
    assert "Compress the values of namespace rand client-side" not in titles
    advice = Recommendation.objects.get(target=target, title__contains="namespace json")
    assert advice.statement == "" and advice.category == "cache"


def test_value_sampling_respects_the_per_value_and_total_caps_and_skips_non_strings(lfu):
    client, target = lfu
    for i in range(20):
        client.set(f"blob:{i}", _json_value(i) * 20)  # ~100 KiB each
    client.hset("hash:1", mapping={f"f{n}": "v" * 100 for n in range(200)})

    run = _run(target, compress_value_cap=8192, compress_total_cap=40_000)
    compression = run.evidence_before["compression"]
    # Four 8 KiB prefixes, then the 7,232 bytes left of the total.
    assert compression["sampled_bytes"] == 40_000 and compression["sampled_keys"] == 5
    (blob,) = compression["namespaces"]
    assert blob["namespace"] == "blob" and blob["sampled_bytes"] == 40_000 and blob["large_keys"] == 20
    # Extrapolated to all 20 large values (their full size), not only the sampled prefixes.
    assert blob["codecs"]["zstd"]["estimated_saved"] > 20 * blob["codecs"]["zstd"]["saved"]


def test_samples_stop_at_their_time_limit_and_extrapolate_to_keys_outside_the_sample(lfu):
    client, target = lfu
    for i in range(30):
        client.set(f"doc:{i}", _json_value(i))
    stopped = _run(target, sample_seconds=0).evidence_before
    assert stopped["key_access"]["complete"] is False and stopped["compression"]["complete"] is False
    assert stopped["compression"]["sampled_keys"] == 0

    partial = _run(target, sample_keys=10).evidence_before["compression"]
    (doc,) = partial["namespaces"]
    assert doc["keys"] == 30 and doc["sampled_keys"] == 10
    # 10 of 30 keys sampled: about three times the sample's saving (MEMORY USAGE counts allocator overhead too).
    assert (
        2.5 * doc["codecs"]["zstd"]["saved"]
        < doc["codecs"]["zstd"]["estimated_saved"]
        < 4 * doc["codecs"]["zstd"]["saved"]
    )


def test_cache_report_api_and_page_show_hot_cold_keys_and_compressible_values_to_viewers(
    lfu, anonymous_client, viewer_auth, viewer_client
):
    client, target = lfu
    for i in range(10):
        client.set(f"json:{i}", _json_value(i))
    _restore(client, "old:1", b"o" * 3000, "FREQ", 0)
    _run(target)

    response = anonymous_client.get(f"/api/v1/performance/cache/report?target={target.name}", **viewer_auth)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["key_access"]["lfu"] is True and body["key_access"]["cold_keys"][0]["key"] == "old:1"
    assert body["key_access"]["hot_keys"][0]["freq"] >= 0 and body["key_access"]["hot_keys"][0]["idle_seconds"] is None
    spaces = {n["namespace"]: n for n in body["compression"]["namespaces"]}
    assert spaces["json"]["codecs"]["zstd"]["estimated_saved"] > 0 and spaces["old"]["codecs"]["lz4"]["ratio"] > 10

    html = viewer_client.get(f"/optimizer/cache/{target.id}/").content.decode()
    hot_cold = html[html.index('data-testid="hot-cold-keys"') :]
    assert "Hot and cold keys" in hot_cold and "old:1" in hot_cold
    compressible = html[html.index('data-testid="compressible-values"') :]
    assert "Compressible values" in compressible and "<code>json</code>" in compressible


def test_the_cache_report_api_has_no_key_fields_before_an_analysis(db, anonymous_client, viewer_auth):
    data = TargetInput(name="never-analysed", kind="redis", url=f"redis://127.0.0.1:{os.getpid() % 1000 + 1}/0")
    target = target_create(data=data, actor=None, via="system")
    body = anonymous_client.get(f"/api/v1/performance/cache/report?target={target.name}", **viewer_auth).json()
    assert body["key_access"] is None and body["compression"] is None


def test_without_client_no_touch_namespaces_with_an_idle_delete_policy_are_not_read(lru):
    client, target = lru
    for i in range(5):
        _restore(client, f"json:{i}", _json_value(i), "IDLETIME", 3 * DAY)
        client.set(f"page:{i}", _json_value(i))

    compression = _run(target, idle_delete_namespaces={"json": 30 * DAY}).evidence_before["compression"]
    assert compression["no_touch"] is False  # this machine's Redis 7.0 has no CLIENT NO-TOUCH (7.2+)
    assert [n["namespace"] for n in compression["namespaces"]] == ["page"]
    assert any("has no CLIENT NO-TOUCH" in note and "5 sampled values" in note for note in compression["notes"])
    assert any(note.startswith("Not sampled") and "json" in note for note in compression["notes"])
    assert client.object("idletime", "json:0") >= 3 * DAY  # never read, so still idle
