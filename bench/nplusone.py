"""`nplusone`: planted N+1 patterns in a real workload are found; an unrelated pair with similar calls is not.

On the bench's embedded PostgreSQL 18 (pg_stat_statements preloaded), in a database of its own
(dropped afterwards): orders, their lines, customers, products and prices. Each window the
application lists the orders of one day (a random 20 to 200 rows, seeded) and then, per order, looks
up its lines (`WHERE order_id = $1`: the key references orders) and its customer (`WHERE id = $1`:
orders reference the key), two N+1s with k = 1. Elsewhere, independently, a product list returns a
random 20 to 200 rows and prices are looked up a random 20 to 200 times (similar totals, no relation),
and a settings lookup runs a steady 100 times. After each window the real PostgreSQL collector
(`collect_target`) stores the pg_stat_statements deltas; then the `n_plus_one` tuner runs once
through the normal run path. The round trips a day assume one window a minute (the collection
interval of a busy target), since the bench's windows last well under a second. Last, one window's
line lookups run both ways, one query per order and one `= ANY($1)` query, over a local socket.
"""

from __future__ import annotations

import random
import statistics
import time
from urllib.parse import quote

import psycopg
from django.conf import settings
from psycopg import sql

from bench import BenchResult, Figure, options
from monitoring.services.collection import collect_target
from monitoring.services.targets import TargetInput, target_create
from optimizer.models import OptimizationRun, Recommendation
from optimizer.services.runs import run_create, run_execute

DATABASE = "pp_bench_nplusone"
SEED = 15
ROWS = (20, 200)  # parent rows and unrelated calls per window
STEADY_CALLS = 100


def _url(database: str) -> str:
    db = settings.DATABASES["default"]
    password = quote(db["PASSWORD"] or "", safe="")
    return f"postgresql://{quote(db['USER'], safe='')}:{password}@{db['HOST']}:{db['PORT']}/{database}"


def _admin(statement: sql.Composable) -> None:
    with psycopg.connect(_url("postgres"), autocommit=True) as conn:
        conn.execute(statement)


SCHEMA = [
    "CREATE TABLE customers (id int PRIMARY KEY, name text)",
    "CREATE TABLE orders (id int PRIMARY KEY, customer_id int NOT NULL REFERENCES customers, placed_on int NOT NULL)",
    "CREATE INDEX ON orders (placed_on)",
    "CREATE TABLE order_lines (id serial PRIMARY KEY, order_id int NOT NULL REFERENCES orders, sku int, qty int)",
    "CREATE INDEX ON order_lines (order_id)",
    "CREATE TABLE products (id int PRIMARY KEY, category int NOT NULL)",
    "CREATE INDEX ON products (category)",
    "CREATE TABLE prices (product_id int PRIMARY KEY, price numeric)",
    "CREATE TABLE settings (key text PRIMARY KEY, value text)",
]


def _load(conn: psycopg.Connection, windows: int, parent_rows: list[int], product_rows: list[int]) -> None:
    for statement in SCHEMA:
        conn.execute(statement)
    conn.execute("INSERT INTO customers SELECT g, 'customer ' || g FROM generate_series(1, 5000) g")
    conn.execute("INSERT INTO settings SELECT 'key' || g, 'v' FROM generate_series(1, 100) g")
    conn.execute("INSERT INTO prices SELECT g, g % 100 FROM generate_series(1, 5000) g")
    order_id = product_id = 0
    for day in range(windows):
        for _ in range(parent_rows[day]):
            order_id += 1
            conn.execute("INSERT INTO orders VALUES (%s, %s, %s)", [order_id, 1 + (order_id * 7919) % 5000, day])
        for _ in range(product_rows[day]):
            product_id += 1
            conn.execute("INSERT INTO products VALUES (%s, %s)", [product_id, day])
    conn.execute("INSERT INTO order_lines (order_id, sku, qty) SELECT id, id % 97, 1 + id % 3 FROM orders")
    conn.execute("INSERT INTO order_lines (order_id, sku, qty) SELECT id, id % 89, 2 FROM orders WHERE id % 2 = 0")
    conn.execute("ANALYZE")


def _window(conn: psycopg.Connection, day: int, price_calls: int, rng: random.Random) -> None:
    orders = conn.execute("SELECT id, customer_id FROM orders WHERE placed_on = %s ORDER BY id", [day]).fetchall()
    for order_id, customer_id in orders:
        conn.execute("SELECT sku, qty FROM order_lines WHERE order_id = %s", [order_id]).fetchall()
        conn.execute("SELECT name FROM customers WHERE id = %s", [customer_id]).fetchone()
    conn.execute("SELECT id FROM products WHERE category = %s", [day]).fetchall()
    for _ in range(price_calls):
        conn.execute("SELECT price FROM prices WHERE product_id = %s", [rng.randint(1, 5000)]).fetchone()
    for n in range(STEADY_CALLS):
        conn.execute("SELECT value FROM settings WHERE key = %s", [f"key{n + 1}"]).fetchone()


def _round_trip_ms(conn: psycopg.Connection, day: int) -> tuple[float, float]:
    """One window's line lookups: one query per order, then one query for all of them (best of 5 each)."""
    ids = [r[0] for r in conn.execute("SELECT id FROM orders WHERE placed_on = %s", [day]).fetchall()]
    loop, batched = [], []
    for _ in range(5):
        started = time.perf_counter()
        for order_id in ids:
            conn.execute("SELECT sku, qty FROM order_lines WHERE order_id = %s", [order_id]).fetchall()
        loop.append(time.perf_counter() - started)
        started = time.perf_counter()
        conn.execute("SELECT order_id, sku, qty FROM order_lines WHERE order_id = ANY(%s)", [ids]).fetchall()
        batched.append(time.perf_counter() - started)
    return min(loop) * 1000, min(batched) * 1000


def run() -> BenchResult:
    windows = 6 if options.quick else 12
    rng = random.Random(SEED)
    parent_rows = [rng.randint(*ROWS) for _ in range(windows)]
    product_rows = [rng.randint(*ROWS) for _ in range(windows)]
    price_calls = [rng.randint(*ROWS) for _ in range(windows)]
    ident = sql.Identifier(DATABASE)
    _admin(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))
    _admin(sql.SQL("CREATE DATABASE {} TEMPLATE template1").format(ident))  # template1 has pg_stat_statements
    try:
        with psycopg.connect(_url(DATABASE), autocommit=True) as conn:
            _load(conn, windows, parent_rows, product_rows)
            target = target_create(
                data=TargetInput(name=f"bench-nplusone-{time.time_ns()}", kind="postgres", url=_url(DATABASE)),
                actor=None,
                via="system",
            )
            assert collect_target(target=target).ok  # the baseline
            for day in range(windows):
                print(f"nplusone: window {day + 1}/{windows}…", flush=True)
                _window(conn, day, price_calls[day], rng)
                outcome = collect_target(target=target)
                assert outcome.ok, outcome.error
            started = time.perf_counter()
            tuner_run = run_execute(
                run_id=run_create(tuner="n_plus_one", target=target, trigger="operator", actor=None, dry_run=False).id
            )
            tuner_ms = (time.perf_counter() - started) * 1000
            assert tuner_run.status == OptimizationRun.Status.SUCCEEDED, tuner_run.error
            loop_ms, batched_ms = _round_trip_ms(conn, max(range(windows), key=parent_rows.__getitem__))
    finally:
        _admin(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))
    found = {
        r.evidence["child"]["table"]: r.evidence
        for r in Recommendation.objects.filter(target=target, category="n_plus_one", status="open")
    }
    return _result(windows, parent_rows, product_rows, price_calls, found, tuner_run, tuner_ms, loop_ms, batched_ms)


def _planted(name: str, evidence: dict | None, parent_table: str) -> Figure:
    if evidence is None:
        return Figure(f"planted N+1: {name} per order", "not found", target="found, k = 1", passed=False)
    per_day = evidence["round_trips_per_window"] * 1440
    right = evidence["parent"]["tables"] == [parent_table] and abs(evidence["k"] - 1) < 0.05
    return Figure(
        f"planted N+1: {name} per order",
        f"found, parent {', '.join(evidence['parent']['tables'])}, k = {evidence['k']:.2f}, r = {evidence['r']:.3f}, "
        f"{evidence['round_trips_per_window']:,.0f} round trips a window saved ({per_day:,.0f} a day at 1/min)",
        target="found, parent orders, k = 1, r >= 0.9",
        passed=right and evidence["r"] >= 0.9,
    )


def _result(windows, parent_rows, product_rows, price_calls, found, tuner_run, tuner_ms, loop_ms, batched_ms):
    unrelated_r = statistics.correlation(price_calls, product_rows)
    false_positives = sorted(set(found) - {"order_lines", "customers"})
    return BenchResult(
        name="nplusone",
        title=f"N+1 detection over {windows} windows of a real workload",
        setup=__doc__.split("\n\n", 1)[1].strip(),
        figures=(
            _planted("lines looked up (FK order_lines.order_id → orders)", found.get("order_lines"), "public.orders"),
            _planted("customer looked up (FK orders.customer_id → customers)", found.get("customers"), "public.orders"),
            Figure(
                "unrelated pair (price lookups vs product list rows)",
                "not found" if "prices" not in found else "FOUND",
                target="not found",
                baseline=f"calls {sum(price_calls):,} vs rows {sum(product_rows):,}; r = {unrelated_r:.2f}",
                passed="prices" not in found,
            ),
            Figure(
                "other findings (steady settings lookups included)",
                ", ".join(false_positives) or "none",
                target="none",
                passed=not false_positives,
            ),
            Figure(
                "one window's line lookups over a local socket: per order / one = ANY($1)",
                f"{loop_ms:.1f} / {batched_ms:.1f} ms ({max(parent_rows)} orders)",
                baseline="per-order loop",
                ratio=f"{loop_ms / batched_ms:.0f}x fewer ms" if batched_ms else "",
            ),
            Figure("tuner run (analysis of the windows, through the run path)", f"{tuner_ms:.0f} ms"),
        ),
        notes=(
            f"Parent rows per window: {', '.join(map(str, parent_rows))}. The tuner compared "
            f"{tuner_run.evidence_before['children_checked']} lookups by key (those called often enough) "
            f"with the other queries over {tuner_run.evidence_before['windows']} windows and advised "
            f"{tuner_run.evidence_before['n_plus_one']}."
        ),
    )
