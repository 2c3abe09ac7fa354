"""The Redis collector: memory, fragmentation, hit ratio, throughput, clients, keys and replication.

One INFO per collection, over a connection kept between collections. Metrics (labels in braces):
    redis_used_memory_bytes, redis_used_memory_rss_bytes
    redis_mem_fragmentation_ratio, redis_allocator_frag_ratio, redis_allocator_frag_bytes
        (the allocator ones only when Redis runs on jemalloc, which reports them)
    redis_hit_ratio_percent            keyspace hits / lookups over the interval (from self.state);
                                       absent on the first collection, after a restart or
                                       CONFIG RESETSTAT, and when there were no lookups
    redis_ops_per_second               COUNTER of total_commands_processed
    redis_connected_clients, redis_blocked_clients
    redis_evicted_keys_per_second, redis_expired_keys_per_second   COUNTER
    redis_keys{db}, redis_keys_with_ttl{db}     from INFO keyspace (db="0", "1", ...)
    redis_replication_lag_bytes        replica: master_repl_offset - slave_repl_offset;
                                       primary: the largest lag of its connected replicas; else 0
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from core import outbound
from core.conninfo import scrub
from core.redis_client import DRIVER_INFO
from monitoring.collectors.base import COUNTER, Collector, CollectorError, CollectResult, Measurement, register
from monitoring.collectors.kept import KeptConnections


def redis_client(url: str, *, timeout: float) -> redis.Redis:
    """A client whose every call gives up after `timeout` seconds, with no hidden retries."""
    try:
        client = redis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            # redis-py retries three times by default, which would quadruple the timeout.
            retry=Retry(NoBackoff(), 0),
            decode_responses=True,
            driver_info=DRIVER_INFO,
        )
    except ValueError as exc:
        raise CollectorError(f"The Redis URL is not valid: {scrub(str(exc), url)}") from exc
    return outbound.redis_checked(client)  # every connection of its pool is checked by the outbound policy


# One client per target and worker process, kept between collections (see kept.py). redis-py
# itself reconnects a pooled connection that the server closed meanwhile.
_kept: KeptConnections[redis.Redis] = KeptConnections(close=lambda client: client.close())


@contextmanager
def kept_redis_client(target, *, timeout: float) -> Iterator[redis.Redis]:
    """A redis_client for the target's URL, kept for its next collection unless this one failed."""
    slot, fingerprint = target.pk, (target.url, timeout)
    client = _kept.take(slot, fingerprint) or redis_client(target.url, timeout=timeout)
    with _kept.lent(slot, fingerprint, client):
        yield client


def _refusal(exc: BaseException) -> outbound.OutboundRefused | None:
    """The policy's refusal behind a redis-py error (redis-py wraps what _connect raises)."""
    seen = 0
    cause: BaseException | None = exc
    while cause is not None and seen < 10:
        if isinstance(cause, outbound.OutboundRefused):
            return cause
        cause, seen = cause.__cause__ or cause.__context__, seen + 1
    return None


def redis_error_message(exc: redis.RedisError, *, where: str, timeout: float, url: str) -> str:
    """An operator-readable sentence for a redis-py error."""
    refused = _refusal(exc)
    if refused is not None:
        return scrub(f"{where} is refused: {refused}", url)
    if isinstance(exc, redis.TimeoutError):
        reason = f"did not answer within {timeout:g} s"
    elif isinstance(exc, redis.AuthenticationError):
        reason = f"refused the password ({exc})"
    elif isinstance(exc, redis.ConnectionError):
        reason = f"could not be reached ({exc})"
    else:
        reason = f"answered with an error ({exc})"
    return scrub(f"{where} {reason}", url)


GAUGES = (  # (metric, INFO field, unit)
    ("redis_used_memory_bytes", "used_memory", "bytes"),
    ("redis_used_memory_rss_bytes", "used_memory_rss", "bytes"),
    ("redis_mem_fragmentation_ratio", "mem_fragmentation_ratio", ""),
    ("redis_allocator_frag_ratio", "allocator_frag_ratio", ""),  # jemalloc only
    ("redis_allocator_frag_bytes", "allocator_frag_bytes", "bytes"),
    ("redis_connected_clients", "connected_clients", ""),
    ("redis_blocked_clients", "blocked_clients", ""),
)
COUNTERS = (  # (metric named for its rate, cumulative INFO field)
    ("redis_ops_per_second", "total_commands_processed"),
    ("redis_evicted_keys_per_second", "evicted_keys"),
    ("redis_expired_keys_per_second", "expired_keys"),
)


def _number(info: dict, name: str) -> float | None:
    try:
        return float(info[name])
    except (KeyError, TypeError, ValueError):
        return None


@register
class RedisCollector(Collector):
    kind = "redis"
    label = "Redis"

    def collect(self) -> CollectResult:
        info = self._info()
        result = CollectResult()
        add = result.measurements.append
        # Fields missing from INFO (another allocator, a Redis-compatible server) are skipped.
        for metric, name, unit in GAUGES:
            value = _number(info, name)
            if value is not None:
                add(Measurement(metric, value, unit=unit))
        for metric, name in COUNTERS:
            value = _number(info, name)
            if value is not None:
                add(Measurement(metric, value, kind=COUNTER, unit="/s"))
        hit_ratio = self._hit_ratio(info)
        if hit_ratio is not None:
            add(Measurement("redis_hit_ratio_percent", hit_ratio, unit="%"))
        for name, space in sorted(info.items()):
            if name.startswith("db") and name[2:].isdigit() and isinstance(space, dict):
                db = {"db": name[2:]}
                add(Measurement("redis_keys", float(space.get("keys", 0)), db))
                add(Measurement("redis_keys_with_ttl", float(space.get("expires", 0)), db))
        add(Measurement("redis_replication_lag_bytes", float(replication_lag_bytes(info)), unit="bytes"))
        return result

    def test_connection(self) -> str:
        info = self._info()
        return f"Redis {info.get('redis_version', '?')}"

    def _info(self) -> dict:
        url = self.target.url
        try:
            with kept_redis_client(self.target, timeout=self.timeout) as client:
                info = client.info()
        except redis.RedisError as exc:
            where = f"Redis at {self.target.url_display or 'the configured URL'}"
            raise CollectorError(redis_error_message(exc, where=where, timeout=self.timeout, url=url)) from exc
        if "used_memory" not in info:
            raise CollectorError("The server answered INFO without memory statistics; is it really Redis?")
        return info

    def _hit_ratio(self, info: dict) -> float | None:
        """Hits / lookups since the previous collection; None when there is no valid previous one."""
        hits, misses = _number(info, "keyspace_hits"), _number(info, "keyspace_misses")
        if hits is None or misses is None:
            return None
        current = {"run_id": str(info.get("run_id", "")), "hits": hits, "misses": misses}
        previous = self.state.get("keyspace")
        self.state["keyspace"] = current
        if not previous or previous.get("run_id") != current["run_id"]:
            return None  # first sight, or the server restarted
        hits = current["hits"] - previous["hits"]
        misses = current["misses"] - previous["misses"]
        if hits < 0 or misses < 0 or hits + misses == 0:
            return None  # CONFIG RESETSTAT, or no lookups at all: no ratio to speak of
        return 100.0 * hits / (hits + misses)


def replication_lag_bytes(info: dict) -> int:
    if info.get("role") == "slave":
        return max(0, int(info.get("master_repl_offset", 0)) - int(info.get("slave_repl_offset", 0)))
    primary_offset = int(info.get("master_repl_offset", 0))
    lags = [
        primary_offset - int(replica.get("offset", 0))
        for name, replica in info.items()
        if name.startswith("slave") and name[5:].isdigit() and isinstance(replica, dict)
    ]
    return max([0, *lags])
