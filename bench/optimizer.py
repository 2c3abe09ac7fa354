"""`optimizer`: the index advisor finds planted missing indexes and speeds the workload up, finds the
partial index on a constant normalization hid, and chooses a set that costs writes less than one index
per query; the VACUUM tuner removes the dead tuples of the tables it chooses.

On this machine's PostgreSQL 15 with HypoPG (a database of its own, dropped afterwards): 1.5M rows in
four tables, 17 query shapes (OLTP shapes 20 calls each, the two low-selectivity report counts 2 each,
the four reads of the write-heavy `scans` table 50 each) and 7 planted missing indexes, plus a lost-order
check `status = $1 AND created_at > $2` run with the 0.1 % value 'lost' (the partial index on it must be
found through pg_stats' most-common values and verified by HypoPG with the constant written in). The
load's statistics are reset; the write load the advisor weighs is the timed 20k-row orders insert and
the timed 50k-row scans insert (10 batches) run before it. The workload runs five times with the same
random parameters (after one untimed warm-up call per shape, synchronous_commit off so the shared disk's
fsync latency stays out) and each shape keeps its fastest pass; its calls and time are recorded as
monitoring snapshots (QueryText/QueryStat, as the collector would from pg_stat_statements, which is not
preloaded on that server). The advisor runs (HypoPG-verified), every advised index is applied through
the normal apply path (CREATE INDEX CONCURRENTLY), and the workload and both inserts run again. The naive
baseline drops those and indexes every filtered or joined column instead, and on `scans` the index
each read shape wins with on its own (one per shape, Dexter-style). The scans reads of the two sets
are compared with the sets taking turns three times (each shape's fastest round), so the load of the
shared machine falls on both. Then 300k rows are deleted and the VACUUM tuner runs once."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from datetime import timedelta

import psycopg
from django.utils import timezone
from psycopg import sql

import bench
from bench import BenchResult, Figure
from monitoring.models import QueryStat, QueryText, Target
from monitoring.services.targets import TargetInput, target_create
from optimizer.models import OptimizationRun, Recommendation
from optimizer.services.runs import recommendation_apply_start, run_create, run_execute

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
DATABASE = "pp_bench_optimizer"
URL = f"postgresql://postgres@127.0.0.1:5432/{DATABASE}"
CUSTOMERS, ORDERS, EVENTS, SCANS = 200_000, 700_000, 300_000, 300_000
SHIPMENTS = SCANS // 10  # 10 scans per shipment
OBSERVED_SCAN_WRITES = 20_000  # rows inserted into scans before the advisor runs: its observed write rate
INSERT_ROWS, INSERT_BATCH = 50_000, 5_000  # the timed insert into scans with each index set
TARGET_SET_READS = 1.2  # the advisor's set keeps the scans reads within this factor of the naive set's
SET_ROUNDS = 3  # the two index sets on scans take turns this many times for the reads comparison
CALLS = 20  # executions of each OLTP shape per workload pass
SCAN_CALLS = 50  # the scans reads are the app's hottest
PASSES = 5
REPORT_CALLS = 2  # the two low-selectivity analytic counts run rarely, as reports do
TARGET_RECALL = 90.0
TARGET_SPEEDUP = 10.0
TARGET_VACUUM = 95.0
NOISE, NOISE_MS = 1.5, 1.0  # a shape "slows" beyond 1.5x + 1 ms in total (noise of sub-ms calls on a shared machine)

SCHEMA = [
    ("CREATE TABLE customers (id int PRIMARY KEY, email text, country text, created_at timestamptz)", None),
    (
        "CREATE TABLE orders (id int PRIMARY KEY, customer_id int, sku int, status text, created_at timestamptz, "
        "total numeric) WITH (autovacuum_enabled = off)",
        None,
    ),
    ("CREATE TABLE events (id int PRIMARY KEY, order_id int, kind text, at timestamptz)", None),
    (
        "CREATE TABLE scans (id bigint PRIMARY KEY, shipment_id int, device int, scanned_at timestamptz, note text)",
        None,
    ),
    (
        "INSERT INTO customers SELECT g, 'user' || g || '@example.com', (ARRAY['de','fr','us','uk','jp'])[g %% 5 + 1], "
        "now() - g * interval '1 min' FROM generate_series(1, %s) g",
        [CUSTOMERS],
    ),
    (
        "INSERT INTO orders SELECT g, 1 + (g::bigint * 7919) %% %s, g %% 20000, "
        "CASE WHEN g %% 1000 = 0 THEN 'lost' ELSE (ARRAY['new','paid','sent','done','void'])[g %% 5 + 1] END, "
        "now() - g * interval '10 s', g %% 1000 "
        "FROM generate_series(1, %s) g",
        [CUSTOMERS, ORDERS],
    ),
    (
        "INSERT INTO events SELECT g, 1 + (g::bigint * 104729) %% %s, (ARRAY['view','pay','ship'])[g %% 3 + 1], "
        "now() - g * interval '5 s' FROM generate_series(1, %s) g",
        [ORDERS, EVENTS],
    ),
    (
        "INSERT INTO scans SELECT g, (g::bigint * 7919) %% %s, g %% 500, now() - g * interval '1 s', md5(g::text) "
        "FROM generate_series(1, %s) g",
        [SHIPMENTS, SCANS],
    ),
    ("ANALYZE", None),
    # The load is not the workload: the write rates the advisor weighs start here.
    ("SELECT pg_stat_reset()", None),
]


@dataclass(frozen=True)
class Shape:
    normalized: str  # as pg_stat_statements shows it
    params: object  # () -> tuple of parameters
    calls: int = CALLS

    @property
    def executable(self) -> str:
        text = self.normalized
        for n in range(9, 0, -1):
            text = text.replace(f"${n}", "%s")
        return text


def _ago(seconds: int):
    return timezone.now() - timedelta(seconds=seconds)


def _shapes() -> list[Shape]:
    r = random.Random(7)
    return [
        Shape(
            "SELECT * FROM orders WHERE customer_id = $1 ORDER BY created_at DESC LIMIT $2",
            lambda: (r.randint(1, CUSTOMERS), 10),
        ),
        Shape("SELECT count(*) FROM orders WHERE customer_id = $1", lambda: (r.randint(1, CUSTOMERS),)),
        Shape(
            "SELECT * FROM orders WHERE sku = $1 AND created_at > $2",
            lambda: (r.randint(0, 19999), _ago(30 * 86400)),
        ),
        Shape("SELECT * FROM customers WHERE email = $1", lambda: (f"user{r.randint(1, CUSTOMERS)}@example.com",)),
        Shape("SELECT * FROM events WHERE order_id = $1", lambda: (r.randint(1, ORDERS),)),
        Shape(
            "SELECT o.id, e.kind FROM orders o JOIN events e ON e.order_id = o.id WHERE o.customer_id = $1",
            lambda: (r.randint(1, CUSTOMERS),),
        ),
        Shape(
            "SELECT count(*) FROM orders WHERE created_at BETWEEN $1 AND $2",
            lambda: (_ago(3600 * 24 + 600), _ago(3600 * 24)),
        ),
        Shape("SELECT * FROM orders WHERE id = $1", lambda: (r.randint(1, ORDERS),)),
        Shape("SELECT * FROM customers WHERE id = $1", lambda: (r.randint(1, CUSTOMERS),)),
        Shape(
            "SELECT count(*) FROM orders WHERE status = $1", lambda: (r.choice(["new", "paid", "void"]),), REPORT_CALLS
        ),
        Shape("UPDATE orders SET total = total + $1 WHERE id = $2", lambda: (1, r.randint(1, ORDERS))),
        Shape("SELECT count(*) FROM customers WHERE country = $1", lambda: (r.choice(["de", "us"]),), REPORT_CALLS),
        # The lost-parcel check: normalization hides 'lost', the one value a partial index wins on.
        Shape("SELECT * FROM orders WHERE status = $1 AND created_at > $2", lambda: ("lost", _ago(30 * 86400))),
        *_scan_shapes(r),
    ]


def _scan_shapes(r: random.Random) -> list[Shape]:
    """Reads of the write-heavy scans table: each has an index of its own, two wider ones serve them all."""
    return [
        Shape(
            "SELECT * FROM scans WHERE shipment_id = $1 ORDER BY scanned_at DESC LIMIT $2",
            lambda: (r.randrange(SHIPMENTS), 5),
            SCAN_CALLS,
        ),
        Shape(
            "SELECT count(*) FROM scans WHERE shipment_id = $1 AND device = $2",
            lambda: (r.randrange(SHIPMENTS), r.randrange(500)),
            SCAN_CALLS,
        ),
        Shape(
            "SELECT * FROM scans WHERE device = $1 AND scanned_at > $2",
            lambda: (r.randrange(500), _ago(3600)),
            SCAN_CALLS,
        ),
        Shape(
            "SELECT id, scanned_at FROM scans WHERE device = $1 ORDER BY scanned_at DESC LIMIT $2",
            lambda: (r.randrange(500), 10),
            SCAN_CALLS,
        ),
    ]


# (table, leading column) of each planted missing index
PLANTED = [
    ("orders", "customer_id"),
    ("orders", "sku"),
    ("customers", "email"),
    ("events", "order_id"),
    ("orders", "created_at"),
    ("scans", "shipment_id"),
    ("scans", "device"),
]
PARTIAL = ("orders", "status = 'lost'")  # the planted partial index: its predicate
NAIVE = [
    ("orders", "customer_id"),
    ("orders", "sku"),
    ("orders", "created_at"),
    ("orders", "status"),
    ("customers", "email"),
    ("customers", "country"),
    ("events", "order_id"),
]
# Dexter-style on scans: the index each read shape wins with on its own, one per shape.
NAIVE_SCANS = [
    "(shipment_id, scanned_at DESC)",
    "(shipment_id, device)",
    "(device, scanned_at)",
    "(device, scanned_at DESC)",
]


def _connect() -> psycopg.Connection:
    return psycopg.connect(URL, autocommit=True, prepare_threshold=None)


def _workload(make_shapes) -> list[tuple[float, int]]:
    """Per shape, the fastest of PASSES passes (each with the same parameter sequence): noise on a shared
    machine only ever adds time."""
    passes = [_workload_pass(make_shapes()) for _ in range(2 if bench.options.quick else PASSES)]
    return [min(results, key=lambda r: r[0]) for results in zip(*passes, strict=True)]


def _workload_pass(shapes: list[Shape]) -> list[tuple[float, int]]:
    """(total ms, calls) per shape, the same parameters sequence each pass, after one untimed warm-up call."""
    results = []
    with _connect() as conn:
        # Commits without waiting for the WAL flush: the shared disk's fsync latency is not what an index costs.
        conn.execute("SET synchronous_commit = off")
        for shape in shapes:
            conn.execute(shape.executable, shape.params())
            total = 0.0
            for _ in range(shape.calls):
                params = shape.params()
                started = time.perf_counter()
                cursor = conn.execute(shape.executable, params)
                if cursor.description:
                    cursor.fetchall()
                total += (time.perf_counter() - started) * 1000
            results.append((total, shape.calls))
    return results


def _record(target: Target, shapes: list[Shape], timings: list[tuple[float, int]]) -> None:
    now = timezone.now()
    for number, (shape, (total, calls)) in enumerate(zip(shapes, timings, strict=True), start=1):
        QueryText.objects.create(target=target, queryid=number, database=DATABASE, query=shape.normalized)
        QueryStat.objects.create(
            target=target,
            queryid=number,
            collected_at=now,
            interval_seconds=60,
            calls=calls,
            total_time_ms=total,
            rows=calls,
            shared_blks_hit=0,
            shared_blks_read=0,
        )


def _index_set(conn: psycopg.Connection) -> list[tuple[str, str, int]]:
    return conn.execute(
        "SELECT c.relname, t.relname, pg_relation_size(c.oid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "JOIN pg_class t ON t.oid = i.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace "
        "WHERE n.nspname = 'public' AND NOT i.indisprimary"
    ).fetchall()


def _insert_ms(conn: psycopg.Connection, start_id: int) -> float:
    started = time.perf_counter()
    conn.execute(
        "INSERT INTO orders SELECT g, g %% 1000, g %% 20000, 'new', now(), 1 FROM generate_series(%s, %s) g",
        [start_id, start_id + 20_000],
    )
    elapsed = (time.perf_counter() - started) * 1000
    conn.execute("DELETE FROM orders WHERE id >= %s", [start_id])
    return elapsed


def _insert_scans_ms(conn: psycopg.Connection) -> float:
    """INSERT_ROWS new scans in batches of INSERT_BATCH (ms), then the table as it was (deleted, vacuumed)."""
    start = 10_000_000
    elapsed = 0.0
    for first in range(start, start + INSERT_ROWS, INSERT_BATCH):
        started = time.perf_counter()
        conn.execute(
            "INSERT INTO scans SELECT g, (g::bigint * 7919) %% %s, g %% 500, now(), md5(g::text) "
            "FROM generate_series(%s, %s) g",
            [SHIPMENTS, first, first + INSERT_BATCH - 1],
        )
        elapsed += (time.perf_counter() - started) * 1000
    conn.execute("DELETE FROM scans WHERE id >= %s", [start])
    conn.execute("VACUUM scans")
    return elapsed


def _scan_ms(shapes: list[Shape], timings: list[tuple[float, int]]) -> float:
    """Total ms of the scans read shapes."""
    return sum(t for shape, (t, _) in zip(shapes, timings, strict=True) if " FROM scans " in shape.normalized)


def _scan_index_defs(conn: psycopg.Connection) -> list[str]:
    return [
        row[0]
        for row in conn.execute(
            "SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = 'scans'::regclass AND NOT indisprimary"
        ).fetchall()
    ]


def _scan_reads(sets: dict[str, list[str]]) -> dict[str, float]:
    """Total ms of the scans read shapes with each set of scans indexes (CREATE INDEX statements): the sets
    take turns SET_ROUNDS times, so the load of a shared machine falls on both, and each shape keeps its
    fastest round (noise only ever adds time)."""
    best: dict[str, list[float]] = {}
    for _ in range(2 if bench.options.quick else SET_ROUNDS):
        for name, statements in sets.items():
            with _connect() as conn:
                for (index,) in conn.execute(
                    "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                    "WHERE i.indrelid = 'scans'::regclass AND NOT i.indisprimary"
                ).fetchall():
                    conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(index)))
                for statement in statements:
                    conn.execute(statement)
                conn.execute("ANALYZE scans")
            timings = [t for t, _ in _workload_pass(_scan_shapes(random.Random(11)))]
            best[name] = [min(pair) for pair in zip(best.get(name, timings), timings, strict=True)]
    return {name: sum(timings) for name, timings in best.items()}


def _setup() -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DATABASE)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
    with _connect() as conn:
        conn.execute("CREATE EXTENSION hypopg")
        for statement, params in SCHEMA:
            conn.execute(statement, params)


def _teardown() -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DATABASE)))


def run() -> BenchResult:
    Target.objects.filter(name="bench-optimizer").delete()
    print(f"loading {CUSTOMERS + ORDERS + EVENTS:,} rows on PostgreSQL 15 (HypoPG)…", flush=True)
    _setup()
    try:
        return _measure()
    finally:
        _teardown()


def _measure() -> BenchResult:
    target = target_create(
        data=TargetInput(name="bench-optimizer", kind="postgres", url=URL, interval_seconds=60, timeout_seconds=10),
        actor=None,
        via="system",
    )
    shapes = _shapes()
    print("workload without the planted indexes…", flush=True)
    before = _workload(_shapes)
    _record(target, shapes, before)
    with _connect() as conn:
        insert_none = _insert_ms(conn, 5_000_000)
        # The timed insert is also the scans table's observed write load the advisor weighs.
        scans_none = _insert_scans_ms(conn)

    print("index advisor (HypoPG)…", flush=True)
    started = time.perf_counter()
    advise = run_execute(
        run_id=run_create(tuner="indexes", target=target, trigger="operator", actor=None, dry_run=False).id
    )
    advise_s = time.perf_counter() - started
    assert advise.status == OptimizationRun.Status.SUCCEEDED, advise.error
    advised = list(Recommendation.objects.filter(target=target, category="missing_index", status="open"))
    advised_cols = [(r.evidence["table"], r.evidence["columns"]) for r in advised]
    found = [p for p in PLANTED if any(t == p[0] and cols[0] == p[1] for t, cols in advised_cols)]
    recall = 100.0 * len(found) / len(PLANTED)
    partial = [r.title.removeprefix("Create index on ") for r in advised if r.evidence.get("predicate") == PARTIAL[1]]
    print(f"advised: {advised_cols}", flush=True)
    for recommendation in advised:
        applied = run_execute(
            run_id=recommendation_apply_start(recommendation=recommendation, actor=None, trigger="operator").id
        )
        assert applied.status == OptimizationRun.Status.SUCCEEDED, applied.error

    print("workload with the advised indexes…", flush=True)
    after = _workload(_shapes)
    with _connect() as conn:
        advised_indexes = _index_set(conn)
        advised_scan_defs = _scan_index_defs(conn)
        insert_advised = _insert_ms(conn, 5_000_000)
        scans_advised = _insert_scans_ms(conn)
        for name, _, _ in advised_indexes:
            conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))
        for table, column in NAIVE:
            conn.execute(sql.SQL("CREATE INDEX ON {} ({})").format(sql.Identifier(table), sql.Identifier(column)))
        for columns in NAIVE_SCANS:
            conn.execute(sql.SQL("CREATE INDEX ON scans " + columns))  # constant column lists of this module
        conn.execute("ANALYZE")
        naive_indexes = _index_set(conn)
    print("workload with the naive indexes…", flush=True)
    naive = _workload(_shapes)
    with _connect() as conn:
        insert_naive = _insert_ms(conn, 5_000_000)
        scans_naive = _insert_scans_ms(conn)
        naive_scan_defs = _scan_index_defs(conn)
    scan_indexes = {
        "advised": [i for i in advised_indexes if i[1] == "scans"],
        "naive": [i for i in naive_indexes if i[1] == "scans"],
    }
    print("scans reads, the advisor's and the naive set taking turns…", flush=True)
    reads = {"none": _scan_ms(shapes, before), **_scan_reads({"advised": advised_scan_defs, "naive": naive_scan_defs})}

    total_before = sum(t for t, _ in before)
    total_after = sum(t for t, _ in after)
    total_naive = sum(t for t, _ in naive)
    per_shape = [
        f"| `{shape.normalized}` | {shape.calls} | {b:.1f} | {a:.1f} | {n:.1f} |"
        for shape, (b, _), (a, _), (n, _) in zip(shapes, before, after, naive, strict=True)
    ]
    slowed = [
        shapes[i].normalized
        for i, ((b, _), (a, _)) in enumerate(zip(before, after, strict=True))
        if a > b * NOISE + NOISE_MS
    ]
    print(f"slowed: {slowed or 'none'}", flush=True)
    vacuum = _vacuum(target)

    speedup = total_before / total_after
    figures = (
        Figure(
            "Planted missing indexes recommended",
            f"{len(found)}/{len(PLANTED)} ({recall:.0f} %)",
            f">= {TARGET_RECALL:.0f} %",
            passed=recall >= TARGET_RECALL,
        ),
        Figure(
            "Queries planned costlier with the advised indexes (HypoPG final pass)",
            str(advise.evidence_before["plans_worse"]),
            "0",
            passed=advise.evidence_before["plans_worse"] == 0,
        ),
        Figure(
            "Query shapes measured slower after applying",
            f"{len(slowed)} of {len(shapes)}",
            "0",
            passed=not slowed,
        ),
        Figure(
            f"Whole workload ({len(shapes)} shapes, {sum(s.calls for s in shapes)} calls)",
            f"{total_after:.0f} ms",
            f">= {TARGET_SPEEDUP:.0f}x faster",
            f"{total_before:.0f} ms without indexes",
            f"{speedup:.0f}x",
            passed=speedup >= TARGET_SPEEDUP,
        ),
        Figure(
            "Naive: index every filtered column",
            f"{total_naive:.0f} ms, {len(naive_indexes)} indexes, {sum(s for *_, s in naive_indexes) // 2**20} MB",
            baseline=(f"advisor: {len(advised_indexes)} indexes, {sum(s for *_, s in advised_indexes) // 2**20} MB"),
            ratio=f"{total_before / total_naive:.0f}x vs none",
        ),
        Figure(
            "20k-row INSERT into orders",
            f"{insert_advised:.0f} ms with advised indexes",
            baseline=f"{insert_none:.0f} ms none, {insert_naive:.0f} ms naive",
            ratio=f"naive {insert_naive / insert_advised:.2f}x of advised",
        ),
        Figure(
            "Partial index on the constant normalization hid (status = $1, planted 'lost' at 0.1 %)",
            "; ".join(partial) or "not advised",
            "advised, HypoPG-verified",
            passed=bool(partial),
        ),
        Figure(
            f"{INSERT_ROWS // 1000}k-row INSERT into the write-heavy scans ({INSERT_ROWS // INSERT_BATCH} batches)",
            f"{scans_advised:.0f} ms with the advisor's set ({len(scan_indexes['advised'])} indexes, "
            f"{sum(i[2] for i in scan_indexes['advised']) / 2**20:.1f} MB)",
            "< naive set",
            f"{scans_naive:.0f} ms naive ({len(scan_indexes['naive'])} indexes, one per shape, "
            f"{sum(i[2] for i in scan_indexes['naive']) / 2**20:.1f} MB); {scans_none:.0f} ms none",
            f"{scans_advised / scans_naive:.2f}x of naive",
            passed=scans_advised < scans_naive,
        ),
        Figure(
            f"Scans reads ({len(NAIVE_SCANS)} shapes, {SCAN_CALLS} calls each) with the advisor's set",
            f"{reads['advised']:.1f} ms",
            f"<= {TARGET_SET_READS}x naive and >= {TARGET_SPEEDUP:.0f}x vs none",
            f"{reads['naive']:.1f} ms naive, {reads['none']:.0f} ms none",
            f"{reads['advised'] / reads['naive']:.2f}x of naive, {reads['none'] / reads['advised']:.0f}x vs none",
            passed=reads["advised"] <= TARGET_SET_READS * reads["naive"]
            and reads["none"] / reads["advised"] >= TARGET_SPEEDUP,
        ),
        Figure(
            "Advisor run (HypoPG passes)",
            f"{advise_s:.1f} s",
            baseline=f"{advise.evidence_before['candidates']} candidates",
        ),
        Figure(
            "Dead tuples removed by one VACUUM tuner run",
            f"{vacuum['removed']:.1f} %",
            f">= {TARGET_VACUUM:.0f} %",
            f"{vacuum['dead_before']:,} dead before",
            f"{vacuum['dead_after']:,} after",
            passed=vacuum["removed"] >= TARGET_VACUUM,
        ),
    )
    advised_text = "; ".join(
        f"{r.evidence['table']}({', '.join(r.evidence['columns'])})"
        + (f" WHERE {r.evidence['predicate']}" if r.evidence.get("predicate") else "")
        for r in advised
    )
    notes = (
        f"Advised: {advised_text}. "
        f"Left out of the set for their write cost: {advise.evidence_before['left_out_for_writes']} "
        f"(advised set {advise.evidence_before['advised_set_bytes'] / 2**20:.1f} MB as HypoPG estimates it). "
        f"Slowed shapes (beyond {NOISE}x + {NOISE_MS:g} ms, the noise margin): {', '.join(slowed) or 'none'}. "
        f"VACUUM chose {vacuum['tables']} in {vacuum['duration_ms']:.0f} ms. "
        "Where the naive set is faster it is on the two low-selectivity report counts (status, country): "
        "an index there lets PostgreSQL count from a smaller structure, a gain below the 50 % plan-cost "
        "saving the advisor requires, paid for by every write.\n\n"
        "Per shape, total ms over its calls:\n\n"
        "| Shape | Calls | No indexes | Advised | Naive |\n| --- | --- | --- | --- | --- |\n" + "\n".join(per_shape)
    )
    return BenchResult(
        name="optimizer",
        title="index advisor and VACUUM tuner",
        setup=__doc__.split("\n\n", 1)[1],
        figures=figures,
        notes=notes,
    )


def _vacuum(target: Target) -> dict:
    with _connect() as conn:
        conn.execute("DELETE FROM orders WHERE id % 7 < 3")  # ~300k dead tuples
        conn.execute("SELECT pg_stat_force_next_flush()")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with _connect() as conn:
            dead = conn.execute("SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'orders'").fetchone()[0]
        if dead >= ORDERS * 0.4:
            break
        time.sleep(0.5)
    run = run_execute(
        run_id=run_create(tuner="vacuum", target=target, trigger="operator", actor=None, dry_run=False).id
    )
    assert run.status == OptimizationRun.Status.SUCCEEDED, run.error
    chosen = run.evidence_before.get("actions", {})
    dead_before = sum(t["dead_tuples"] for t in chosen.values())
    dead_after = sum(t["dead_tuples"] for t in run.evidence_after.get("actions", {}).values())
    return {
        "tables": ", ".join(chosen) or "no table",
        "dead_before": dead_before,
        "dead_after": dead_after,
        "removed": 100.0 * (dead_before - dead_after) / dead_before if dead_before else 0.0,
        "duration_ms": sum(s.get("duration_ms", 0) for s in run.statements),
    }
