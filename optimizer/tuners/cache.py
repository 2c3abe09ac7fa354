"""Redis cache compaction: a throttled SCAN-based analysis (never KEYS) and three kinds of action.

Analysis, per scanned key (up to max_keys, `scan_count` per SCAN call, pausing `pause_ms` between
calls): MEMORY USAGE, PTTL and, unless the eviction policy is LFU, OBJECT IDLETIME. It reports memory
by namespace (the key up to its first ':'), the top keys, TTL buckets, idle buckets and
fragmentation (INFO memory, judged with MEMORY DOCTOR's thresholds: ratio above 1.1 and more than
10 MB wasted).

Actions (the run's own, like VACUUM for PostgreSQL):
- MEMORY PURGE when fragmentation is high (and advice to enable activedefrag when it is off);
- EXPIRE on TTL-less keys of the namespaces in `ttl_namespaces` ({namespace: seconds});
- UNLINK of keys idle longer than `idle_delete_namespaces` allows ({namespace: seconds}).
Used memory and the bytes of the touched keys are measured before and after.

On a bounded sample of the scan it also reports hot and cold keys and how much client-side compression
of large string values would save (optimizer.tuners.cachekeys), as advice without Apply.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from typing import Any

import redis

from optimizer.tuners import cachekeys
from optimizer.tuners.base import (
    Action,
    Analysis,
    Finding,
    Tuner,
    TunerError,
    TunerSchedule,
    human_size,
    register,
)

FRAGMENTATION_RATIO = 1.1  # MEMORY DOCTOR's "high fragmentation" ratio
FRAGMENTATION_BYTES = 10 * 1024 * 1024  # and its minimum wasted bytes
TTL_BUCKETS = (("< 1 min", 60), ("< 1 h", 3600), ("< 1 d", 86400), ("< 7 d", 7 * 86400))
IDLE_BUCKETS = (("< 1 h", 3600), ("< 1 d", 86400), ("< 7 d", 7 * 86400))
BATCH = 500


def _bucket(seconds: float, buckets: tuple[tuple[str, int], ...], last: str) -> str:
    for name, limit in buckets:
        if seconds < limit:
            return name
    return last


def _text(key: bytes) -> str:
    return key.decode("utf-8", errors="backslashreplace")


@register
class CacheTuner(Tuner):
    kind = "cache"
    label = "Redis cache compaction"
    description = "Memory by namespace, top keys, TTLs, idle keys, fragmentation; purge, expire, delete idle."
    target_kinds = ("redis",)
    # Hourly at :47: Redis cache analysis and compaction (SCAN-based, throttled; policies from the schedule's kwargs).
    schedule = TunerSchedule(
        name="Optimizer: Redis cache compaction",
        crontab="47 * * * *",
        description="Memory by namespace, TTLs, idle keys, fragmentation; purge, expire and delete by policy.",
    )
    defaults = {
        "match": "*",
        "max_keys": 100_000,
        "scan_count": 500,
        "pause_ms": 5.0,
        "top_keys": 20,
        "ttl_namespaces": {},
        "idle_delete_namespaces": {},
        "fragmentation_ratio": FRAGMENTATION_RATIO,
        "fragmentation_bytes": FRAGMENTATION_BYTES,
        "namespace_separators": ":",
        # Hot/cold keys and compressible values: on the first sample_keys scanned keys, for sample_seconds at most.
        "sample_keys": 10_000,
        "sample_seconds": 10.0,
        "hot_keys": 10,
        "cold_keys": 10,
        "cold_idle_seconds": 7 * 86400,
        "compress_min_bytes": 1024,
        "compress_value_cap": 64 * 1024,
        "compress_total_cap": 8 * 1024 * 1024,
        "compress_min_saving_bytes": 1024 * 1024,
        "compress_min_saving_ratio": 0.2,
    }

    @property
    def client(self) -> redis.Redis:
        return self.session.redis

    def _memory(self) -> dict[str, Any]:
        info = self.client.info("memory")
        return {
            "bytes_used": int(info.get("used_memory", 0)),
            "fragmentation_ratio": float(info.get("mem_fragmentation_ratio", 0) or 0),
            "fragmentation_bytes": int(info.get("mem_fragmentation_bytes", 0) or 0),
            "allocator_frag_ratio": float(info.get("allocator_frag_ratio", 0) or 0),
            "allocator_frag_bytes": int(info.get("allocator_frag_bytes", 0) or 0),
            "maxmemory_policy": str(info.get("maxmemory_policy", "")),
        }

    def _scan(self, idle_supported: bool) -> list[tuple[bytes, int, float, float | None]]:
        """(key, bytes, ttl seconds or -1, idle seconds or None) of up to max_keys keys, throttled."""
        found: list[tuple[bytes, int, float, float | None]] = []
        cursor = 0
        while True:
            cursor, keys = self.client.scan(cursor=cursor, match=self.params["match"], count=self.params["scan_count"])
            keys = keys[: max(0, self.params["max_keys"] - len(found))]
            if keys:
                pipe = self.client.pipeline(transaction=False)
                for key in keys:
                    pipe.memory_usage(key)
                    pipe.pttl(key)
                    if idle_supported:
                        pipe.object("idletime", key)
                values = pipe.execute(raise_on_error=False)
                step = 3 if idle_supported else 2
                for index, key in enumerate(keys):
                    size, pttl = values[index * step], values[index * step + 1]
                    idle = values[index * step + 2] if idle_supported else None
                    if size is None or isinstance(size, Exception) or pttl == -2:
                        continue  # expired or deleted since SCAN saw it
                    ttl = pttl / 1000 if isinstance(pttl, int) and pttl >= 0 else -1
                    found.append((key, int(size), ttl, float(idle) if isinstance(idle, int) else None))
            if cursor == 0 or len(found) >= self.params["max_keys"]:
                return found
            time.sleep(self.params["pause_ms"] / 1000)

    def analyze(self) -> Analysis:
        separators = str(self.params["namespace_separators"]) or ":"
        try:
            memory = self._memory()
            policy = memory["maxmemory_policy"]
            idle_supported = "lfu" not in policy
            keys = self._scan(idle_supported)
            doctor = self.client.execute_command("MEMORY DOCTOR")
            activedefrag = self.client.config_get("activedefrag").get("activedefrag", "no")
        except redis.RedisError as exc:
            raise TunerError(f"Redis at {self.session.target.url_display} failed the analysis: {exc}") from exc
        namespaces: dict[str, dict[str, int]] = defaultdict(lambda: {"keys": 0, "bytes": 0, "no_ttl": 0})
        ttl_buckets, idle_buckets = Counter(), Counter()
        for key, size, ttl, idle in keys:
            namespace = cachekeys.namespace_of(key, separators)
            entry = namespaces[namespace]
            entry["keys"] += 1
            entry["bytes"] += size
            if ttl < 0:
                entry["no_ttl"] += 1
                ttl_buckets["no expiry"] += 1
            else:
                ttl_buckets[_bucket(ttl, TTL_BUCKETS, ">= 7 d")] += 1
            if idle is not None:
                idle_buckets[_bucket(idle, IDLE_BUCKETS, ">= 7 d")] += 1
        ratio, wasted = self.params["fragmentation_ratio"], self.params["fragmentation_bytes"]
        high = (memory["allocator_frag_ratio"] > ratio and memory["allocator_frag_bytes"] >= wasted) or (
            memory["fragmentation_ratio"] > ratio and memory["fragmentation_bytes"] >= wasted
        )
        top = sorted(keys, key=lambda k: -k[1])[: self.params["top_keys"]]
        analysis = Analysis(
            evidence={
                **memory,
                "keys_scanned": len(keys),
                "idle_supported": idle_supported,
                "fragmentation_high": high,
                "activedefrag": activedefrag,
                "memory_doctor": _text(doctor) if isinstance(doctor, bytes) else str(doctor),
                "namespaces": sorted(({"namespace": n, **v} for n, v in namespaces.items()), key=lambda n: -n["bytes"]),
                "top_keys": [{"key": _text(k), "bytes": size, "ttl": ttl} for k, size, ttl, _ in top],
                "ttl_buckets": dict(ttl_buckets),
                "idle_buckets": dict(idle_buckets),
            }
        )
        if high:
            analysis.actions.append(
                Action(statement="MEMORY PURGE", description="fragmentation is high", subject="memory")
            )
            if activedefrag != "yes":
                ratio = memory["allocator_frag_ratio"] or memory["fragmentation_ratio"]
                analysis.findings.append(
                    Finding(
                        key="activedefrag",
                        category="cache",
                        title="Enable active defragmentation",
                        explanation=(
                            f"Fragmentation ratio {ratio:.2f} "
                            f"wastes {human_size(max(memory['allocator_frag_bytes'], memory['fragmentation_bytes']))}. "
                            "activedefrag reclaims it continuously (jemalloc builds only)."
                        ),
                        statements=["CONFIG SET activedefrag yes"],
                        estimated_impact="reclaims fragmented memory",
                        priority=55,
                    )
                )
        self._key_analyses(analysis, keys, policy, separators, {n: v["keys"] for n, v in namespaces.items()})
        self._policy_actions(analysis, keys)
        return analysis

    def _key_analyses(self, analysis: Analysis, keys, policy: str, separators: str, per_namespace) -> None:
        """Hot/cold keys and compressible values of the first sample_keys keys (cachekeys), with their advice."""
        p = self.params
        sample = cachekeys.Sample(
            keys=[(k, size, idle) for k, size, _, idle in keys[: int(p["sample_keys"])]],
            separators=separators,
            deadline=time.monotonic() + float(p["sample_seconds"]),
            scanned_per_namespace=per_namespace,
        )
        try:
            access = cachekeys.key_access(
                self.client,
                sample=sample,
                policy=policy,
                hot_keys=int(p["hot_keys"]),
                cold_keys=int(p["cold_keys"]),
                cold_idle_seconds=int(p["cold_idle_seconds"]),
            )
            compression = cachekeys.compressible_values(
                self.client,
                sample=sample,
                min_bytes=int(p["compress_min_bytes"]),
                value_cap=int(p["compress_value_cap"]),
                total_cap=int(p["compress_total_cap"]),
                skip_namespaces=frozenset(str(n) for n in p["idle_delete_namespaces"]),
            )
        except redis.RedisError as exc:
            raise TunerError(f"Redis at {self.session.target.url_display} failed the key sample: {exc}") from exc
        analysis.evidence["key_access"] = access
        analysis.evidence["compression"] = compression
        if not access["lfu"]:
            analysis.notes.append(f"no hot keys: {policy or 'this policy'} counts no accesses (LFU needed)")
        analysis.findings.extend(
            cachekeys.findings(
                access=access,
                compression=compression,
                min_saving_bytes=int(p["compress_min_saving_bytes"]),
                min_saving_ratio=float(p["compress_min_saving_ratio"]),
            )
        )

    def _policy_actions(self, analysis: Analysis, keys) -> None:
        ttl_policy = {str(n): int(s) for n, s in self.params["ttl_namespaces"].items()}
        idle_policy = {str(n): int(s) for n, s in self.params["idle_delete_namespaces"].items()}
        for namespace, seconds in sorted(ttl_policy.items()):
            chosen = [(k, size) for k, size, ttl, _ in keys if ttl < 0 and _text(k).startswith(f"{namespace}:")]
            if chosen:
                analysis.actions.append(
                    Action(
                        statement=f"EXPIRE {namespace}:* {seconds} ({len(chosen)} TTL-less keys)",
                        description=f"TTL policy of namespace {namespace}",
                        subject=f"ttl:{namespace}",
                        payload={"command": "expire", "seconds": seconds, "keys": chosen},
                    )
                )
        for namespace, seconds in sorted(idle_policy.items()):
            chosen = [
                (k, size)
                for k, size, _, idle in keys
                if idle is not None and idle > seconds and _text(k).startswith(f"{namespace}:")
            ]
            if chosen:
                analysis.actions.append(
                    Action(
                        statement=f"UNLINK {namespace}:* idle > {seconds} s ({len(chosen)} keys)",
                        description=f"idle-key policy of namespace {namespace}",
                        subject=f"idle:{namespace}",
                        payload={"command": "unlink", "seconds": seconds, "keys": chosen},
                    )
                )
        if not analysis.evidence["idle_supported"] and idle_policy:
            analysis.notes.append("idle-key deletion skipped: the eviction policy is LFU (no OBJECT IDLETIME)")

    def perform(self, action: Action) -> None:
        command = action.payload.get("command")
        if command is None:
            self.session.execute_action(action.statement)
            return
        if self.session.dry_run:
            self.session.record(action.statement)
            return
        started = time.perf_counter()
        keys = [k for k, _ in action.payload["keys"]]
        try:
            for start in range(0, len(keys), BATCH):
                pipe = self.client.pipeline(transaction=False)
                for key in keys[start : start + BATCH]:
                    if command == "expire":
                        pipe.expire(key, action.payload["seconds"], nx=True)
                    else:
                        pipe.unlink(key)
                pipe.execute()
                time.sleep(self.params["pause_ms"] / 1000)
        except redis.RedisError as exc:
            self.session.record(action.statement, error=str(exc))
            raise TunerError(f"Redis at {self.session.target.url_display} refused {action.statement}: {exc}") from exc
        self.session.record(action.statement, duration_ms=(time.perf_counter() - started) * 1000, keys=len(keys))

    def measure(self, actions: list[Action]) -> dict[str, Any]:
        memory = self._memory()
        measured: dict[str, Any] = {"memory": {"bytes_used": memory["bytes_used"]}}
        for action in actions:
            keys = action.payload.get("keys")
            if not keys:
                continue
            pipe = self.client.pipeline(transaction=False)
            for key, _ in keys:
                pipe.pttl(key)
            ttls = pipe.execute()
            present = [size for (_, size), ttl in zip(keys, ttls, strict=True) if ttl != -2]
            measured[action.subject] = {
                "keys": len(present),
                "bytes": sum(present),
                "without_ttl": sum(1 for ttl in ttls if ttl == -1),
            }
        return measured

    def apply(self, recommendation) -> None:
        for statement in recommendation.statements:
            self.session.execute_action(statement)

    def evidence_for(self, recommendation) -> dict[str, Any]:
        memory = self._memory()
        return {"bytes_used": memory["bytes_used"], "fragmentation_bytes": memory["fragmentation_bytes"]}
