"""`plan_regression`: a role setting turns index scans off; the regression is recorded and alerted.

A database of its own on the bench's embedded PostgreSQL 18 (pg_stat_statements preloaded): a table
of 200,000 orders with an index on customer_id, read by a role of its own, `bench_plan_app`. A
workload thread logs in as that role (a new session every 20 queries, as a pooled application's
connections come and go) and counts one customer's orders again and again. The plan capture tuner
runs every 5 s (2 s with --quick; in production every 15 minutes), each time as a scheduled run would; the
default alert rules and a channel are installed, so a regression's event goes through the real
alert path to the notification queue.

1. Baseline: three captures with the index (any regression here is a false alarm).
2. `ALTER ROLE bench_plan_app SET enable_indexscan = off` (and enable_bitmapscan, enable_indexonlyscan:
   otherwise the planner moves to a bitmap scan, which is a change, but hardly slower). Captures
   until a PlanRegression is recorded and the "Plan regression" alert fires with a notification queued.
3. `ALTER ROLE ... RESET ALL`: the plan changes back and gets faster, which is not a regression.
"""

from __future__ import annotations

import os
import threading
import time
from urllib.parse import quote

import psycopg
from django.conf import settings
from psycopg import sql

from bench import BenchResult, Figure, options

DATABASE = "bench_plan_regression"
ROLE = "bench_plan_app"
PASSWORD = "bench-plan-app"  # noqa: S105 (of a role the bench creates and drops)
ORDERS = 200_000
CUSTOMERS = 5_000
QUERIES_PER_SESSION = 20
BASELINE_CAPTURES = 3
MAX_CAPTURES_AFTER = 6
AIM_CAPTURES = 2
NO_INDEX_SETTINGS = ("enable_indexscan", "enable_bitmapscan", "enable_indexonlyscan")


def _url(database: str, *, user: str | None = None, password: str | None = None) -> str:
    db = settings.DATABASES["default"]
    user = quote(user or db["USER"], safe="")
    secret = quote(password if password is not None else db["PASSWORD"] or "", safe="")
    return f"postgresql://{user}:{secret}@{db['HOST']}:{db['PORT']}/{database}"


def _admin(*statements: sql.Composable | str, database: str = "postgres") -> None:
    with psycopg.connect(_url(database), autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def _setup() -> None:
    ident, role, password = sql.Identifier(DATABASE), sql.Identifier(ROLE), sql.Literal(PASSWORD)
    _admin(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))
    _admin(sql.SQL("DROP ROLE IF EXISTS {}").format(role))
    _admin(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(role, password))
    _admin(sql.SQL("CREATE DATABASE {}").format(ident))
    _admin(
        "CREATE EXTENSION IF NOT EXISTS pg_stat_statements",
        "CREATE TABLE orders (id int PRIMARY KEY, customer_id int NOT NULL, total numeric NOT NULL, note text)",
        sql.SQL("INSERT INTO orders SELECT g, g % {}, g % 1000, md5(g::text) FROM generate_series(1, {}) g").format(
            sql.Literal(CUSTOMERS), sql.Literal(ORDERS)
        ),
        "CREATE INDEX orders_customer_id_idx ON orders (customer_id)",
        "VACUUM ANALYZE orders",
        sql.SQL("GRANT SELECT ON orders TO {}").format(role),
        "SELECT pg_stat_statements_reset()",
        database=DATABASE,
    )


def _teardown() -> None:
    _admin(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DATABASE)))
    _admin(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(ROLE)))


class Workload(threading.Thread):
    """The application: new sessions as its role (so ALTER ROLE ... SET reaches it), one query after another."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.stopping = threading.Event()
        self.calls = 0

    def run(self) -> None:
        url = _url(DATABASE, user=ROLE, password=PASSWORD)
        customer = 0
        while not self.stopping.is_set():
            with psycopg.connect(url, autocommit=True) as conn:
                for _ in range(QUERIES_PER_SESSION):
                    customer = (customer + 37) % CUSTOMERS
                    conn.execute("SELECT count(*), sum(total) FROM orders WHERE customer_id = %s", [customer])
                    self.calls += 1
            time.sleep(0.002)


def _alter_role(clause: sql.Composable) -> None:
    _admin(sql.SQL("ALTER ROLE {} ").format(sql.Identifier(ROLE)) + clause)


def run() -> BenchResult:
    from alerts.models import Alert, Channel, NotificationItem
    from alerts.services.defaults import rules_install_defaults
    from alerts.services.manage import ChannelInput, channel_create
    from monitoring.models import Target
    from monitoring.services.targets import TargetInput, target_create
    from optimizer.models import PlanCapture, PlanRegression
    from optimizer.services.runs import scheduled_runs

    interval = 2.0 if options.quick else 5.0
    Target.objects.filter(name="bench-plan-regression").delete()
    Alert.objects.filter(rule__builtin_key="plan_regression").delete()
    rules_install_defaults()
    if not Channel.objects.filter(name="bench-plan-regression").exists():
        # Nothing listens there and no worker delivers: the notification stays queued, which is what is measured.
        channel = ChannelInput(
            name="bench-plan-regression", kind="slack", url="http://127.0.0.1:9/bench-slack", group_wait_seconds=0
        )
        channel_create(data=channel, actor=None, via="system")
    print(f"loading {ORDERS:,} orders on the embedded PostgreSQL 18…", flush=True)
    _setup()
    target = target_create(
        data=TargetInput(name="bench-plan-regression", kind="postgres", url=_url(DATABASE), interval_seconds=60),
        actor=None,
        via="system",
    )
    workload = Workload()
    workload.start()
    capture_ms: list[float] = []

    def capture() -> None:
        time.sleep(interval)
        started = time.perf_counter()
        (run_,) = scheduled_runs(tuner="plan_capture", target_id=target.id, dry_run=True)
        capture_ms.append((time.perf_counter() - started) * 1000)
        assert run_.status == "succeeded", run_.error

    def alerted() -> bool:
        alert = Alert.objects.filter(rule__builtin_key="plan_regression", target=target, state="firing").first()
        return alert is not None and NotificationItem.objects.filter(alert=alert).exists()

    try:
        for _ in range(BASELINE_CAPTURES):
            capture()
        false_alarms = PlanRegression.objects.filter(target=target).count()
        for name in NO_INDEX_SETTINGS:
            _alter_role(sql.SQL("SET {} = off").format(sql.Identifier(name)))
        changed_at = time.monotonic()
        print("ALTER ROLE ... SET enable_indexscan = off; capturing…", flush=True)
        until_recorded = until_alerted = None
        alerted_s = None
        for number in range(1, MAX_CAPTURES_AFTER + 1):
            capture()
            if until_recorded is None and PlanRegression.objects.filter(target=target).exists():
                until_recorded = number
            if until_alerted is None and alerted():
                until_alerted, alerted_s = number, time.monotonic() - changed_at
            if until_recorded and until_alerted:
                break
        regression = PlanRegression.objects.filter(target=target).select_related("before", "after").first()
        _alter_role(sql.SQL("RESET ALL"))
        print("ALTER ROLE ... RESET ALL; capturing…", flush=True)
        recorded_before_reset = PlanRegression.objects.filter(target=target).count()
        capture()
        capture()
        faster_flagged = PlanRegression.objects.filter(target=target).count() - recorded_before_reset
        ours = PlanCapture.objects.filter(target=target, role=ROLE).order_by("captured_at", "id")
        plans = list(ours.values_list("fingerprint", flat=True))
        letters = {fingerprint: chr(ord("A") + n) for n, fingerprint in enumerate(dict.fromkeys(plans))}
        sequence = " ".join(letters[fingerprint] for fingerprint in plans)
        queries = sorted(
            {
                " ".join(q.split())[:70]
                for q in PlanCapture.objects.filter(target=target).values_list("query", flat=True)
            }
        )
    finally:
        workload.stopping.set()
        workload.join(timeout=30)
        _alter_role(sql.SQL("RESET ALL"))
        _teardown()

    def shown(value: int | None) -> str:
        return f"{value}" if value is not None else f"not within {MAX_CAPTURES_AFTER}"

    before_ms = regression.mean_before_ms if regression else 0.0
    after_ms = regression.mean_after_ms if regression else 0.0
    return BenchResult(
        name="plan_regression",
        title="Plan regression: a role's enable_indexscan = off detected and alerted",
        setup=__doc__.split("\n\n", 1)[1].strip()
        + f"\n\nCaptures every {interval:g} s; PERFPILOT_PLAN_REGRESSION_THRESHOLD "
        f"{settings.PLAN_REGRESSION_THRESHOLD_PERCENT:g} %.",
        figures=(
            Figure(
                "captures after the change until the regression is recorded",
                shown(until_recorded),
                target=f"≤ {AIM_CAPTURES}",
                passed=until_recorded is not None and until_recorded <= AIM_CAPTURES,
            ),
            Figure(
                "captures after the change until the alert fires with a notification queued",
                shown(until_alerted) + (f" ({alerted_s:.1f} s)" if alerted_s is not None else ""),
                target=f"≤ {AIM_CAPTURES}",
                passed=until_alerted is not None and until_alerted <= AIM_CAPTURES,
            ),
            Figure(
                "query mean time: last capture of the index plan → since then",
                f"{before_ms:.3f} → {after_ms:.3f} ms",
                ratio=f"{after_ms / before_ms:.0f}x slower" if before_ms else "",
            ),
            Figure(
                "regressions recorded with the index (baseline captures)",
                f"{false_alarms} of {BASELINE_CAPTURES} captures",
                target="0",
                passed=false_alarms == 0,
            ),
            Figure(
                "plan changed back (RESET ALL), faster: regressions recorded",
                f"{faster_flagged}",
                target="0",
                passed=faster_flagged == 0,
            ),
            Figure(
                "the role's plan at each capture (A = with the index)",
                sequence,
            ),
            Figure(
                "one capture (a scheduled run: lock, EXPLAIN per top query, store): median / max",
                f"{sorted(capture_ms)[len(capture_ms) // 2]:.0f} / {max(capture_ms):.0f} ms",
            ),
        ),
        notes="Queries captured: " + "; ".join(f"`{q}`" for q in queries) + ". "
        f"Workload: {workload.calls:,} queries in new sessions of {QUERIES_PER_SESSION} queries. "
        f"Other work on the {os.cpu_count()} cores shows up in the times.",
    )
