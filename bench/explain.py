"""`explain`: an EXPLAIN ANALYZE of a 10 s query cancelled from its page; the backend gone within 1 s.

Real processes on the bench's servers: gunicorn (as `make run` starts it) and a Celery worker on the
maintenance queue; the target is a database of its own on this machine's PostgreSQL 15; Chromium
drives the page as an operator would. Each repetition starts EXPLAIN ANALYZE of `SELECT pg_sleep(10)`
from the Explain page, waits until the run page shows the backend active in pg_stat_activity, clicks
Cancel, and measures from the click until the recorded backend is gone from pg_stat_activity and
until the page shows the run cancelled. Also: EXPLAIN ANALYZE of a DELETE of every row leaves every row.
"""

from __future__ import annotations

import os
import time

import psycopg
from django.contrib.auth import get_user_model
from django.test import Client
from playwright.sync_api import sync_playwright
from psycopg import sql

from bench import BenchResult, Figure, percentile
from bench.pageweight import CHROMIUM, CHROMIUM_ARGS
from bench.servers import celery_spawn, web_server
from core.roles import OPERATOR, user_set_role
from core.supervisor import stop_process_group

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DATABASE = "bench_explain"
URL = f"postgresql://postgres@127.0.0.1:5432/{DATABASE}"
REPETITIONS = 5
AIM_SECONDS = 1.0


def _admin(statement: sql.Composable) -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(statement)


def _scalar(query: str, params=None):
    with psycopg.connect(URL, autocommit=True) as conn:
        return conn.execute(query, params).fetchone()[0]


def _until(predicate, timeout: float, step: float = 0.02) -> float | None:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(step)
    return None


def run() -> BenchResult:
    from monitoring.services.targets import TargetInput, target_create
    from optimizer.models import ExplainRun

    _admin(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DATABASE)))
    _admin(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
    with psycopg.connect(URL, autocommit=True) as conn:
        conn.execute("CREATE TABLE orders (id int PRIMARY KEY, total int)")
        conn.execute("INSERT INTO orders SELECT g, g FROM generate_series(1, 100000) g")
    ExplainRun.objects.all().delete()
    # Playwright's sync API runs an event loop in this thread; the ORM reads between its calls are plain sync code.
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    target = target_create(
        data=TargetInput(name=f"bench-explain-{time.time_ns()}", kind="postgres", url=URL), actor=None, via="system"
    )
    user, _ = get_user_model().objects.get_or_create(username="bench-explain")
    user_set_role(user=user, role=OPERATOR)
    client = Client()
    client.force_login(user)
    session = client.cookies["sessionid"].value
    worker = celery_spawn(
        ["worker", "--loglevel", "INFO", "--concurrency", "2", "--queues", "default,maintenance",
         "--hostname", f"bench-explain-{time.time_ns()}@%h", "--without-mingle", "--without-gossip"],
        "explain-worker.log",
    )  # fmt: skip
    gone_s, shown_s, statuses = [], [], []
    try:
        with web_server() as port, sync_playwright() as playwright:
            base = f"http://127.0.0.1:{port}"
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            context.add_cookies([{"name": "sessionid", "value": session, "url": base}])
            page = context.new_page()
            page.set_default_timeout(60_000)
            rows_before = _scalar("SELECT count(*) FROM orders")
            _explain(page, base, target.id, "DELETE FROM orders")
            page.wait_for_selector("[data-testid=explain-run][data-status=done]")
            rows_after = _scalar("SELECT count(*) FROM orders")
            for n in range(REPETITIONS):
                print(f"explain: cancel {n + 1}/{REPETITIONS}…", flush=True)
                _explain(page, base, target.id, f"SELECT pg_sleep(10), {n}")
                page.wait_for_selector("[data-testid=explain-run][data-status=running] [data-testid=activity]")
                pid = ExplainRun.objects.filter(target=target).order_by("-id").first().backend_pid
                time.sleep(1)
                clicked = time.monotonic()
                page.click("[data-testid=explain-cancel]")
                gone = _until(
                    lambda pid=pid: not _scalar("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid]), 15
                )
                page.wait_for_selector("[data-testid=explain-run][data-status=cancelled]", timeout=15_000)
                shown_s.append(time.monotonic() - clicked)
                gone_s.append(gone if gone is not None else float("inf"))
                statuses.append(ExplainRun.objects.filter(target=target).order_by("-id").first().status)
            browser.close()
    finally:
        stop_process_group(worker)
        _admin(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DATABASE)))
    worst = max(gone_s)
    return BenchResult(
        name="explain",
        title=f"EXPLAIN ANALYZE of a 10 s query cancelled from the page ({REPETITIONS} times)",
        setup=__doc__.split("\n\n", 1)[1].strip(),
        figures=(
            Figure(
                "Cancel clicked → backend gone from pg_stat_activity: p50 / max",
                f"{percentile(gone_s, 0.5):.2f} / {worst:.2f} s",
                target=f"< {AIM_SECONDS:g} s each",
                baseline="the query left alone: 10 s",
                ratio=f"{10 / worst:.0f}x sooner" if worst else "",
                passed=worst < AIM_SECONDS,
            ),
            Figure(
                "Cancel clicked → page shows cancelled: p50 / max",
                f"{percentile(shown_s, 0.5):.2f} / {max(shown_s):.2f} s",
            ),
            Figure(
                "runs ended cancelled",
                f"{statuses.count('cancelled')} of {REPETITIONS}",
                target="all",
                passed=statuses.count("cancelled") == REPETITIONS,
            ),
            Figure(
                "rows after EXPLAIN ANALYZE DELETE FROM orders",
                f"{rows_after:,} of {rows_before:,}",
                target="every row left",
                passed=rows_after == rows_before,
            ),
        ),
        notes=f"Worker log: var/bench/explain-worker.log. Other work on the {os.cpu_count()} cores shows up here.",
    )


def _explain(page, base: str, target_id: int, query: str) -> None:
    page.goto(f"{base}/optimizer/database/{target_id}/explain/")
    page.fill("#explain-query", query)
    page.check("input[name=mode][value=analyze]")
    page.click("[data-testid=explain-submit]")
    page.wait_for_selector("[data-testid=explain-run]")
