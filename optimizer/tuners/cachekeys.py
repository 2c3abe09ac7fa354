"""Hot and cold keys, and compressible values, of a bounded sample of a Redis key scan (used by the cache tuner).

Not a tuner of its own: the cache tuner's SCAN already reads every key's size, TTL and idle time, so these
analyses take the first `sample_keys` keys of that scan (SCAN order is the hash table's, so a spread sample)
and stop at a deadline (`sample_seconds`).

Hot and cold keys: under an LFU eviction policy (allkeys-lfu, volatile-lfu) OBJECT FREQ gives each key's
logarithmic access counter: the highest are the hot keys, 0 marks a cold key (with its MEMORY USAGE bytes).
Under any other policy Redis does not count accesses (OBJECT FREQ errors): the analysis says so, suggests
`maxmemory-policy allkeys-lfu`, and reports keys idle longer than `cold_idle_seconds` (OBJECT IDLETIME) as cold.

Compressible values: string keys whose MEMORY USAGE reaches `compress_min_bytes` are read (GETRANGE, at most
`compress_value_cap` bytes each and `compress_total_cap` in all, round-robin across namespaces) and compressed
with zstd and lz4 (cramjam). Per namespace: bytes sampled, bytes each codec saves, the ratio, and the saving
extrapolated to the namespace's large strings (their MEMORY USAGE) and to its keys outside the sample. Hashes,
lists, sets and streams are not sampled. Redis 7.2+ reads with CLIENT NO-TOUCH, so sampling changes no idle
time or LFU counter; older servers count the reads as accesses, so namespaces with an idle-delete policy are
not sampled there and the analysis notes it.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from itertools import chain, zip_longest
from typing import Any

import cramjam
import redis

from optimizer.tuners.base import Finding, human_size

BATCH = 500
STRINGS_ONLY = "Only string values are sampled; hashes, lists, sets, sorted sets and streams are not."
LRU_NOTE = (
    "The eviction policy {policy} does not count accesses (OBJECT FREQ needs an LFU policy), so Redis cannot "
    "tell hot keys here. Set maxmemory-policy allkeys-lfu (or volatile-lfu) to rank keys by access frequency; "
    "cold keys below are those idle (OBJECT IDLETIME) for at least {idle}."
)
TOUCH_NOTE = (
    "Redis {version} has no CLIENT NO-TOUCH (7.2+): reading {keys} sampled values counted as accesses (their idle "
    "time restarted, their LFU counter may have risen)."
)
CODECS = {"zstd": lambda data: cramjam.zstd.compress(data, level=3), "lz4": cramjam.lz4.compress}


def namespace_of(key: bytes, separators: str = ":") -> str:
    """The key up to its first separator; "(none)" for a key without one."""
    text = key.decode("utf-8", errors="backslashreplace")
    cut = min((i for i in (text.find(s) for s in separators) if i >= 0), default=-1)
    return text[:cut] if cut >= 0 else "(none)"


@dataclass
class Sample:
    """The keys the analyses look at: (key, bytes, idle seconds or None) from the cache tuner's scan."""

    keys: list[tuple[bytes, int, float | None]]
    separators: str
    deadline: float  # time.monotonic() after which the analyses stop
    scanned_per_namespace: dict[str, int] = field(default_factory=dict)

    def namespace(self, key: bytes) -> str:
        return namespace_of(key, self.separators)

    def expired(self) -> bool:
        return time.monotonic() >= self.deadline


def _batches(items: list, size: int = BATCH):
    for start in range(0, len(items), size):
        yield items[start : start + size]


def key_access(
    client: redis.Redis, *, sample: Sample, policy: str, hot_keys: int, cold_keys: int, cold_idle_seconds: int
) -> dict[str, Any]:
    """Hot keys (top OBJECT FREQ) and cold keys per namespace; under a non-LFU policy, a note and idle cold keys."""
    lfu = "lfu" in policy
    rows: list[tuple[bytes, int, float]] = []  # key, bytes, freq (LFU) or idle seconds
    complete = True
    if lfu:
        for batch in _batches(sample.keys):
            if sample.expired():
                complete = False
                break
            pipe = client.pipeline(transaction=False)
            for key, _, _ in batch:
                pipe.object("freq", key)
            freqs = pipe.execute(raise_on_error=False)
            rows.extend((k, size, f) for (k, size, _), f in zip(batch, freqs, strict=True) if isinstance(f, int))
    else:
        rows = [(k, size, idle) for k, size, idle in sample.keys if idle is not None]
    spaces: dict[str, dict[str, Any]] = defaultdict(lambda: {"keys": 0, "cold_keys": 0, "cold_bytes": 0})
    cold = []
    for key, size, value in rows:
        entry = spaces[sample.namespace(key)]
        entry["keys"] += 1
        if lfu:
            entry["max_freq"] = max(entry.get("max_freq", 0), int(value))
        if (lfu and value == 0) or (not lfu and value >= cold_idle_seconds):
            entry["cold_keys"] += 1
            entry["cold_bytes"] += size
            cold.append((key, size, value))

    def row(key: bytes, size: int, value: float) -> dict[str, Any]:
        text = key.decode("utf-8", errors="backslashreplace")
        measure = {"freq": int(value)} if lfu else {"idle_seconds": int(value)}
        return {"key": text, "namespace": sample.namespace(key), "bytes": size, **measure}

    hot = sorted(rows, key=lambda r: (-r[2], -r[1]))[:hot_keys] if lfu else []
    return {
        "policy": policy,
        "lfu": lfu,
        "sampled_keys": len(rows),
        "complete": complete,
        "cold_idle_seconds": None if lfu else cold_idle_seconds,
        "note": "" if lfu else LRU_NOTE.format(policy=policy or "(unknown)", idle=human_seconds(cold_idle_seconds)),
        "hot_keys": [row(*r) for r in hot],
        "cold_keys": [row(*r) for r in sorted(cold, key=lambda r: -r[1])[:cold_keys]],
        "namespaces": sorted(
            ({"namespace": n, "max_freq": None, **v} for n, v in spaces.items()),
            key=lambda n: (-n["cold_bytes"], n["namespace"]),
        ),
    }


def human_seconds(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def _no_touch(client: redis.Redis) -> tuple[bool, str]:
    version = str(client.info("server").get("redis_version", "0"))
    parts = [int(p) if p.isdigit() else 0 for p in version.split(".")[:2]] + [0, 0]
    return (parts[0], parts[1]) >= (7, 2), version


def _round_robin(candidates: list[tuple[bytes, int]], sample: Sample) -> list[tuple[bytes, int]]:
    by_namespace: dict[str, list[tuple[bytes, int]]] = defaultdict(list)
    for key, size in candidates:
        by_namespace[sample.namespace(key)].append((key, size))
    return [c for c in chain.from_iterable(zip_longest(*by_namespace.values())) if c is not None]


def compressible_values(
    client: redis.Redis,
    *,
    sample: Sample,
    min_bytes: int,
    value_cap: int,
    total_cap: int,
    skip_namespaces: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """zstd and lz4 savings of large string values per namespace, within the per-value and total byte caps."""
    no_touch, version = _no_touch(client)
    skipped = set() if no_touch else set(skip_namespaces)
    large = [(k, size) for k, size, _ in sample.keys if size >= min_bytes and sample.namespace(k) not in skipped]
    strings, complete = _strings(client, large, sample)
    spaces: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"large_keys": 0, "large_bytes": 0, "sampled_keys": 0, "sampled_bytes": 0, "zstd": 0, "lz4": 0}
    )
    for key, size in strings:
        spaces[sample.namespace(key)]["large_keys"] += 1
        spaces[sample.namespace(key)]["large_bytes"] += size
    plan: list[tuple[bytes, int, int]] = []  # key, bytes to read, MEMORY USAGE
    planned = 0
    for key, size in _round_robin(strings, sample):
        want = min(size, value_cap, total_cap - planned)
        if want < min(min_bytes, value_cap):
            break
        plan.append((key, want, size))
        planned += want
    touched = 0
    for batch in _batches(plan, 100):
        if sample.expired():
            complete = False
            break
        for (key, want, size), value in zip(batch, _read(client, batch, no_touch), strict=True):
            if not isinstance(value, bytes) or not value:
                continue  # deleted or changed type since TYPE saw it
            touched += 1
            entry = spaces[sample.namespace(key)]
            if len(value) < min(min_bytes, want):  # MEMORY USAGE's overhead made a small value look large
                entry["large_keys"] -= 1
                entry["large_bytes"] -= size
                continue
            entry["sampled_keys"] += 1
            entry["sampled_bytes"] += len(value)
            for codec, compress in CODECS.items():
                entry[codec] += len(compress(value))
    in_sample = Counter(sample.namespace(k) for k, _, _ in sample.keys)
    namespaces = [_namespace_row(n, v, in_sample[n], sample) for n, v in spaces.items() if v["sampled_keys"]]
    notes = [STRINGS_ONLY]
    if not no_touch and touched:
        notes.append(TOUCH_NOTE.format(version=version, keys=touched))
    if skipped:
        notes.append(f"Not sampled (idle-delete policy, reads would reset idle times): {', '.join(sorted(skipped))}.")
    return {
        "min_bytes": min_bytes,
        "value_cap": value_cap,
        "total_cap": total_cap,
        "sampled_keys": sum(n["sampled_keys"] for n in namespaces),
        "sampled_bytes": sum(n["sampled_bytes"] for n in namespaces),
        "complete": complete,
        "no_touch": no_touch,
        "notes": notes,
        "namespaces": sorted(namespaces, key=lambda n: (-n["codecs"]["zstd"]["estimated_saved"], n["namespace"])),
    }


def _strings(client: redis.Redis, large: list[tuple[bytes, int]], sample: Sample):
    """The string keys among `large` (TYPE, which never touches a key), and whether the deadline let it finish."""
    strings: list[tuple[bytes, int]] = []
    for batch in _batches(large):
        if sample.expired():
            return strings, False
        pipe = client.pipeline(transaction=False)
        for key, _ in batch:
            pipe.type(key)
        types = pipe.execute(raise_on_error=False)
        strings.extend(c for c, kind in zip(batch, types, strict=True) if kind in (b"string", "string"))
    return strings, True


def _read(client: redis.Redis, batch: list[tuple[bytes, int, int]], no_touch: bool) -> list[Any]:
    """The first `want` bytes of each key, under CLIENT NO-TOUCH when the server has it (one connection)."""
    pipe = client.pipeline(transaction=False)
    if no_touch:
        pipe.execute_command("CLIENT", "NO-TOUCH", "ON")
    for key, want, _ in batch:
        pipe.getrange(key, 0, want - 1)
    if no_touch:
        pipe.execute_command("CLIENT", "NO-TOUCH", "OFF")
    values = pipe.execute(raise_on_error=False)
    return values[1:-1] if no_touch else values


def _namespace_row(namespace: str, v: dict[str, Any], in_sample: int, sample: Sample) -> dict[str, Any]:
    scanned = max(sample.scanned_per_namespace.get(namespace, in_sample), in_sample)
    scale = v["large_bytes"] * scanned / max(in_sample, 1) / v["sampled_bytes"]
    row = {
        "namespace": namespace,
        "keys": scanned,
        "large_keys": v["large_keys"],
        "sampled_keys": v["sampled_keys"],
        "sampled_bytes": v["sampled_bytes"],
    }
    row["codecs"] = {}
    for codec in CODECS:
        saved = max(0, v["sampled_bytes"] - v[codec])
        row["codecs"][codec] = {
            "bytes": v[codec],
            "saved": saved,
            "ratio": round(v["sampled_bytes"] / v[codec], 2) if v[codec] else 0.0,
            "estimated_saved": int(saved * scale),
        }
    return row


def findings(
    *, access: dict[str, Any], compression: dict[str, Any], min_saving_bytes: int, min_saving_ratio: float
) -> list[Finding]:
    """Advice without Apply: application changes (compress client-side) and a policy switch to run by hand."""
    found = []
    for ns in compression["namespaces"]:
        zstd, lz4 = ns["codecs"]["zstd"], ns["codecs"]["lz4"]
        saved, ratio = zstd["estimated_saved"], 1 - 1 / zstd["ratio"] if zstd["ratio"] else 0
        if saved < min_saving_bytes or ratio < min_saving_ratio:
            continue
        found.append(
            Finding(
                key=f"compress:{ns['namespace']}",
                category="cache",
                title=f"Compress the values of namespace {ns['namespace']} client-side",
                explanation=(
                    f"{ns['sampled_keys']} sampled values ({human_size(ns['sampled_bytes'])}) compress "
                    f"{zstd['ratio']}x with zstd and {lz4['ratio']}x with lz4; over the namespace's "
                    f"{ns['large_keys']} large strings and {ns['keys']} keys that is about "
                    f"{human_size(saved)} (zstd) or {human_size(lz4['estimated_saved'])} (lz4) less memory. "
                    "An application change: compress in the client before SET (e.g. django-redis's "
                    "compressor), decompress after GET."
                ),
                estimated_impact=f"~{human_size(saved)} less memory",
                effort="medium",
                priority=45,
                evidence={"namespace": ns["namespace"], "estimated_zstd_saved": saved},
            )
        )
    if not access["lfu"] and access["policy"].endswith("-lru"):
        lfu = access["policy"].replace("-lru", "-lfu")
        found.append(
            Finding(
                key="lfu-policy",
                category="cache",
                title=f"Evict by access frequency ({lfu}) to see hot keys",
                explanation=(
                    f"Under {access['policy']} Redis keeps only the last access time, so it cannot rank hot keys "
                    f"and evicts a key read a million times as readily as one read once. {lfu} evicts the least "
                    "frequently used keys and lets Perfpilot report hot and cold keys by OBJECT FREQ."
                ),
                estimated_impact="hot and cold keys visible; fewer useful keys evicted",
                priority=30,
                evidence={"manual_statements": [f"CONFIG SET maxmemory-policy {lfu}"]},
            )
        )
    return found
