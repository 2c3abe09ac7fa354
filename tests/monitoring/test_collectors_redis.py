"""The Redis collector against real servers: the shared Redis 7 and private ones started per module."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import time

import pytest
import redis
from django.db import connection

from core.embedded import EmbeddedRedis
from core.registry import registry
from monitoring.collectors.base import COUNTER, CollectorError
from monitoring.collectors.redis import RedisCollector
from monitoring.models import Target
from monitoring.services.collection import collect_target
from tests.conftest import free_port
from tests.monitoring.conftest import measurements_by_metric

SHARED_REDIS = "redis://127.0.0.1:6379/0"
PASSWORD = "pw-collector-redis"


def _target(url: str, *, timeout: int = 2, name: str = "redis-under-test") -> Target:
    target = Target(name=name, kind="redis", timeout_seconds=timeout)
    target.url = url
    return target


def _stored(target_id: int, metric: str) -> list[tuple[str, float]]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT s.kind, m.value FROM monitoring_sample m JOIN monitoring_series s ON s.id = m.series_id "
            "WHERE s.target_id = %s AND s.metric = %s ORDER BY m.ts",
            [target_id, metric],
        )
        return cursor.fetchall()


@pytest.fixture(scope="module")
def private_redis(tmp_path_factory):
    """A Redis of our own, so that hits, misses and keys are exactly the ones a test makes."""
    server = EmbeddedRedis(root=tmp_path_factory.mktemp("redis"), port=free_port(), password=PASSWORD)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def private(private_redis):
    """The private server emptied, its statistics reset, and its URL."""
    client = private_redis.client()
    client.flushall()
    client.config_resetstat()
    return client, f"redis://:{PASSWORD}@127.0.0.1:{private_redis.port}/0"


def test_redis_is_registered_under_its_kind():
    assert registry.get("collectors", "redis") is RedisCollector


def test_connection_names_the_redis_version():
    assert re.fullmatch(r"Redis 7\.\d+\.\d+", RedisCollector(_target(SHARED_REDIS)).test_connection())


def test_collect_reads_memory_fragmentation_clients_and_counters():
    found = measurements_by_metric(RedisCollector(_target(SHARED_REDIS)).collect())
    assert found["redis_used_memory_bytes"][0].value > 0
    assert found["redis_used_memory_rss_bytes"][0].value > 0
    assert found["redis_mem_fragmentation_ratio"][0].value > 0
    # The Debian redis-server runs on jemalloc, which reports the allocator's own fragmentation.
    assert found["redis_allocator_frag_ratio"][0].value > 0
    assert "redis_allocator_frag_bytes" in found
    assert found["redis_connected_clients"][0].value >= 1  # ourselves
    assert found["redis_blocked_clients"][0].value >= 0
    for metric in ("redis_ops_per_second", "redis_evicted_keys_per_second", "redis_expired_keys_per_second"):
        assert found[metric][0].kind == COUNTER
    assert found["redis_ops_per_second"][0].value > 0
    assert found["redis_replication_lag_bytes"][0].value >= 0


def test_hit_ratio_comes_from_the_hits_and_misses_between_two_collections(private):
    client, url = private
    collector = RedisCollector(_target(url))
    client.set("known", "1")
    client.get("known")  # before the first collection: must not count
    assert "redis_hit_ratio_percent" not in measurements_by_metric(collector.collect())
    for _ in range(3):
        client.get("known")
    client.get("missing")
    hit_ratio = measurements_by_metric(collector.collect())["redis_hit_ratio_percent"]
    assert hit_ratio[0].value == pytest.approx(75.0)


def test_no_hit_ratio_when_there_were_no_lookups(private):
    _, url = private
    collector = RedisCollector(_target(url))
    collector.collect()
    assert "redis_hit_ratio_percent" not in measurements_by_metric(collector.collect())


def test_hit_ratio_is_omitted_after_the_statistics_were_reset(private):
    client, url = private
    collector = RedisCollector(_target(url))
    client.set("known", "1")
    collector.collect()
    for _ in range(5):
        client.get("known")
    assert "redis_hit_ratio_percent" in measurements_by_metric(collector.collect())
    client.config_resetstat()
    client.get("known")
    assert "redis_hit_ratio_percent" not in measurements_by_metric(collector.collect())
    client.get("known")
    assert measurements_by_metric(collector.collect())["redis_hit_ratio_percent"][0].value == pytest.approx(100.0)


def test_the_collector_state_survives_a_json_round_trip(private):
    """The service stores self.state as JSON between collections, in another process."""
    client, url = private
    first = RedisCollector(_target(url))
    first.collect()
    client.set("known", "1")
    client.get("known")
    second = RedisCollector(_target(url), state=json.loads(json.dumps(first.state)), elapsed_seconds=1.0)
    assert measurements_by_metric(second.collect())["redis_hit_ratio_percent"][0].value == pytest.approx(100.0)


def test_keys_and_keys_with_ttl_are_reported_per_database(private, private_redis):
    client, url = private
    client.set("a", "1")
    client.set("b", "1")
    client.set("c", "1", ex=600)
    db2 = redis.Redis(host="127.0.0.1", port=private_redis.port, password=PASSWORD, db=2)
    db2.set("x", "1", ex=600)
    db2.set("y", "1", ex=600)
    found = measurements_by_metric(RedisCollector(_target(url)).collect())
    keys = {m.labels["db"]: m.value for m in found["redis_keys"]}
    with_ttl = {m.labels["db"]: m.value for m in found["redis_keys_with_ttl"]}
    assert keys == {"0": 3, "2": 2}
    assert with_ttl == {"0": 1, "2": 2}


def test_replication_lag_is_reported_by_a_replica_and_by_its_primary(private, private_redis, tmp_path):
    _, primary_url = private
    replica = EmbeddedRedis(root=tmp_path / "replica", port=free_port(), password=PASSWORD)
    replica.start()
    try:
        client = replica.client()
        # No AOF on the replica (its rewrite after the sync can make SHUTDOWN fail) and no
        # diskless-sync delay on the primary (5 s by default).
        client.config_set("appendonly", "no")
        client.config_set("masterauth", PASSWORD)
        private[0].config_set("repl-diskless-sync-delay", 0)
        client.replicaof("127.0.0.1", private_redis.port)
        deadline = time.monotonic() + 15
        while client.info("replication").get("master_link_status") != "up":
            assert time.monotonic() < deadline, "the replica did not connect to its primary"
            time.sleep(0.1)
        replica_url = f"redis://:{PASSWORD}@127.0.0.1:{replica.port}/0"
        on_replica = measurements_by_metric(RedisCollector(_target(replica_url)).collect())[
            "redis_replication_lag_bytes"
        ]
        on_primary = measurements_by_metric(RedisCollector(_target(primary_url)).collect())[
            "redis_replication_lag_bytes"
        ]
        assert on_replica[0].value >= 0 and on_primary[0].value >= 0
        assert on_primary[0].unit == "bytes"
    finally:
        # NOSAVE: a replica holds a copy only, and a failed final save would keep it running.
        with contextlib.suppress(redis.ConnectionError):
            replica.client().shutdown(nosave=True)


def test_the_connection_is_kept_between_collections_and_survives_a_restart(tmp_path):
    server = EmbeddedRedis(root=tmp_path / "kept", port=free_port(), password=PASSWORD)
    server.start()
    target = _target(f"redis://:{PASSWORD}@127.0.0.1:{server.port}/0", name="kept-redis")
    try:
        RedisCollector(target).collect()
        first = {client["id"] for client in server.client().client_list() if client["cmd"] != "client|list"}
        RedisCollector(target).collect()
        again = {client["id"] for client in server.client().client_list() if client["cmd"] != "client|list"}
        assert len(first) == 1 and again == first  # one connection, not one per collection
        server.stop()
        server.start()  # the kept connection is stale now: redis-py reconnects it
        assert measurements_by_metric(RedisCollector(target).collect())["redis_used_memory_bytes"]
    finally:
        server.stop()


def test_a_closed_port_is_a_readable_error_without_the_password():
    url = f"redis://:s3cret-pw@127.0.0.1:{free_port()}/0"
    with pytest.raises(CollectorError) as caught:
        RedisCollector(_target(url)).collect()
    message = str(caught.value)
    assert "could not be reached" in message and "127.0.0.1" in message
    assert "s3cret-pw" not in message


def test_a_wrong_password_is_reported_as_refused(private_redis):
    url = f"redis://:not-the-pw@127.0.0.1:{private_redis.port}/0"
    with pytest.raises(CollectorError, match="refused the password") as caught:
        RedisCollector(_target(url)).test_connection()
    assert "not-the-pw" not in str(caught.value)


def test_a_server_that_never_answers_times_out_after_the_target_timeout():
    # A listening socket nobody accepts from: connecting succeeds, then no reply ever comes.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        started = time.monotonic()
        with pytest.raises(CollectorError, match="did not answer within 1 s"):
            RedisCollector(_target(url, timeout=1)).collect()
        assert time.monotonic() - started < 2.5  # no hidden retries


@pytest.mark.usefixtures("clean_samples")
def test_collect_target_stores_rates_from_the_second_collection_and_none_after_a_reset(private):
    client, url = private
    target = _target(url, name="redis-rates")
    target.save()
    collect_target(target=target)
    assert _stored(target.id, "redis_ops_per_second") == []
    assert len(_stored(target.id, "redis_used_memory_bytes")) == 1
    for i in range(50):
        client.set(f"k{i}", "v")
        client.get(f"k{i}")
    collect_target(target=target)
    rates = _stored(target.id, "redis_ops_per_second")
    assert len(rates) == 1 and rates[0][0] == "rate" and rates[0][1] > 0
    assert _stored(target.id, "redis_hit_ratio_percent") == [("gauge", 100.0)]
    assert _stored(target.id, "redis_expired_keys_per_second")

    client.config_resetstat()  # total_commands_processed starts again near zero
    collect_target(target=target)
    assert len(_stored(target.id, "redis_ops_per_second")) == 1  # no rate across the reset
    assert len(_stored(target.id, "redis_hit_ratio_percent")) == 1
    collect_target(target=target)
    rates = _stored(target.id, "redis_ops_per_second")
    assert len(rates) == 2 and all(value >= 0 for _, value in rates)
