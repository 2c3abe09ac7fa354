"""The Optimizer in a browser: an operator applies advice (confirming), the result arrives live through
HTMX from the real Celery worker, and the log and Database pages show it. Screenshots in tests/artifacts."""

from __future__ import annotations

import os

import pytest
import redis

from core.services import schedule_sync_defaults
from monitoring.services.targets import TargetInput, target_create
from optimizer.models import OptimizationRun, Recommendation
from optimizer.services.runs import run_create, run_execute
from tests.conftest import PASSWORD
from tests.e2e.browser import ARTIFACTS, browser_page, sign_in, wait_for_js
from tests.e2e.pages import seed_n_plus_one
from tests.optimizer.conftest import make_dead_tuples, make_target
from tests.optimizer.conftest import pg15 as pg15  # the fixture, shared with tests/optimizer

pytestmark = [pytest.mark.e2e, pytest.mark.celery_worker]
PREFIX = f"ppe2e{os.getpid()}"


def test_operator_applies_advice_and_sees_the_result_live(
    live_server, celery_worker_process, operator_user, viewer_user, pg15
):
    with pg15.connect() as conn:
        conn.execute("DROP TABLE IF EXISTS e2e_child, e2e_parent")
        conn.execute("CREATE TABLE e2e_parent (id int PRIMARY KEY)")
        conn.execute('CREATE TABLE e2e_child (id int PRIMARY KEY, "Parent Id" int REFERENCES e2e_parent)')
    make_dead_tuples(pg15, "public", "e2e_dead", rows=5000, deleted=4000)
    target = make_target(pg15, name="orders-db")
    tuners = (
        ("indexes", {}),
        ("vacuum", {"min_dead_tuples": 100, "tables": ["public.e2e_dead"]}),
        ("pgconfig", {}),  # no RAM given: the advice must say which machine's it assumed
    )
    for tuner, params in tuners:
        run_execute(
            run_id=run_create(
                tuner=tuner, target=target, trigger="operator", actor=None, dry_run=False, params=params
            ).id
        )
    schedule_sync_defaults()
    cache = target_create(
        data=TargetInput(name="sessions-cache", kind="redis", url="redis://127.0.0.1:6379/13"), actor=None, via="system"
    )
    client = redis.Redis.from_url("redis://127.0.0.1:6379/13")
    client.mset({f"{PREFIX}sess:{i}": "x" * 300 for i in range(200)})
    client.set(f"{PREFIX}big", "y" * 50_000, ex=3600)
    cache_run = run_create(
        tuner="cache", target=cache, trigger="operator", actor=None, dry_run=True, params={"match": f"{PREFIX}*"}
    )
    run_execute(run_id=cache_run.id)
    advice = Recommendation.objects.get(target=target, category="fk_index", title__contains="e2e_child")
    with browser_page(height=1000) as page:
        page.goto(f"{live_server.url}/login/")
        page.fill("#id_username", operator_user.username)
        page.fill("#id_password", PASSWORD)
        page.click("button[type=submit]")
        page.goto(f"{live_server.url}/optimizer/")
        page.screenshot(path=ARTIFACTS / "optimizer-recommendations.png", full_page=True)
        dialogs = []
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.accept()))
        page.click(f"#recommendation-{advice.id} [data-testid=apply]")
        page.wait_for_selector(f"#apply-result-{advice.id} [data-status=succeeded]", timeout=60_000)
        assert "e2e_child" in dialogs[0]
        page.screenshot(path=ARTIFACTS / "optimizer-applied.png", full_page=True)
        advice.refresh_from_db()
        assert advice.status == "applied"

        page.goto(f"{live_server.url}/optimizer/log/?q=e2e_dead")
        page.click("[data-testid=runs] a")
        wait_for_js(page, "document.querySelector('[data-testid=before-after]').data !== undefined")
        page.screenshot(path=ARTIFACTS / "optimizer-run-before-after.png", full_page=True)

        page.goto(f"{live_server.url}/optimizer/database/{target.id}/")
        assert page.locator("[data-testid=vacuum-status]").inner_text().count("e2e_dead") == 1
        assumptions = page.locator("[data-testid=config-advice] [data-testid=hardware-assumption]")
        if assumptions.count():  # advice only when settings differ
            assert "the target is local: 127.0.0.1" in assumptions.first.inner_text()
        page.screenshot(path=ARTIFACTS / "optimizer-database.png", full_page=True)
        page.goto(f"{live_server.url}/optimizer/log/")
        page.screenshot(path=ARTIFACTS / "optimizer-log.png", full_page=True)
        page.goto(f"{live_server.url}/optimizer/cache/{cache.id}/")
        assert f"{PREFIX}big" in page.locator("[data-testid=top-keys]").inner_text()
        page.screenshot(path=ARTIFACTS / "optimizer-cache.png", full_page=True)

        page.goto(f"{live_server.url}/optimizer/database/{target.id}/")
        other = Recommendation.objects.filter(target=target, status="open").first()
        if other is not None:  # Dismiss answers with a line saying what happened, where the row was
            page.click(f"#recommendation-{other.id} [data-testid=dismiss]")
            page.wait_for_selector(f"#recommendation-{other.id}[data-testid=dismissed]")
            assert "is dismissed" in page.inner_text(f"#recommendation-{other.id}")
    for width in (1280, 390):
        for user in (viewer_user, operator_user):
            _walk_optimizer_pages(live_server.url, user, width, target=target, cache=cache)
    for key in client.scan_iter(match=f"{PREFIX}*"):
        client.unlink(key)
    client.close()


def _walk_optimizer_pages(base_url: str, user, width: int, *, target, cache) -> None:
    """Every optimizer page at one width as one user, a screenshot each; a viewer meets no form to fill."""
    role = user.username.split("-")[1]
    run = OptimizationRun.objects.filter(target=target).order_by("-id").first()
    pages = {
        "index": "/optimizer/",
        "database": f"/optimizer/database/{target.id}/",
        "cache": f"/optimizer/cache/{cache.id}/",
        "log": "/optimizer/log/",
        "run": f"/optimizer/runs/{run.id}/",
    }
    with browser_page(width=width, height=900) as page:
        page.goto(f"{base_url}/login/")
        page.fill("#id_username", user.username)
        page.fill("#id_password", PASSWORD)
        page.click("button[type=submit]")
        for name, path in pages.items():
            page.goto(f"{base_url}{path}")
            page.screenshot(path=ARTIFACTS / f"optimizer-{name}-{role}-{width}.png", full_page=True)
            if role == "viewer" and name != "log":  # the log's search box is a query, not an edit
                assert page.locator("main input:not([type=hidden]), main textarea").count() == 0, name


def _unreachable_target(actor):
    """A PostgreSQL target nothing listens for: its pages show stored advice, and the live parts say so."""
    return target_create(
        data=TargetInput(name="orders-db", kind="postgres", url="postgresql://app@127.0.0.1:9/orders"),
        actor=actor,
        via="system",
    )


@pytest.mark.django_db(transaction=True)
def test_on_a_phone_a_table_inside_advice_is_labelled_by_its_own_header(live_server, operator_user):
    target = _unreachable_target(operator_user)
    Recommendation.objects.create(
        target=target,
        tuner="pgconfig",
        fingerprint="config:reload:work_mem",
        category="config",
        title="Tune 1 setting(s) (needs reload)",
        explanation="For ssd storage and a web workload: work_mem.",
        statement="ALTER SYSTEM SET work_mem = '15MB'",
        evidence={"settings": [{"name": "work_mem", "current": "4MB", "recommended": "15MB", "needs": "reload"}]},
    )
    with browser_page(width=390) as page:
        sign_in(page, live_server.url, operator_user.username, PASSWORD)
        page.goto(f"{live_server.url}/optimizer/")
        inner = page.locator("[data-testid=settings-compare] td")
        inner.first.wait_for()
        assert [cell.get_attribute("data-label") for cell in inner.all()] == [
            "Setting",
            "Current",
            "Recommended",
            "Needs",
        ]
        outer = page.locator("[data-testid=recommendation] > td")
        assert outer.nth(1).get_attribute("data-label") == "Recommendation"
        page.screenshot(path=ARTIFACTS / "optimizer-phone-settings.png", full_page=True)


@pytest.mark.django_db(transaction=True)
def test_on_a_phone_n_plus_one_advice_shows_both_queries_and_the_rewrite_but_no_apply(live_server, operator_user):
    target = _unreachable_target(operator_user)
    seed_n_plus_one(target)
    with browser_page(width=390) as page:
        sign_in(page, live_server.url, operator_user.username, PASSWORD)
        page.goto(f"{live_server.url}/optimizer/database/{target.id}/")
        card = page.locator("[data-testid=n-plus-one-advice]")
        card.locator("[data-testid=application-change]").wait_for()
        assert "order_id = ANY($1)" in card.locator("[data-testid=n-plus-one-rewrite]").inner_text()
        assert card.locator("[data-testid=apply]").count() == 0 and card.locator("[data-testid=dismiss]").count() == 1
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        page.screenshot(path=ARTIFACTS / "optimizer-phone-n-plus-one.png", full_page=True)
