"""Explain in a browser: from a slow query to its plan tree at desktop and phone width, and an
EXPLAIN ANALYZE of a 10 s query cancelled from its page (the real worker runs it). Screenshots in
tests/artifacts."""

from __future__ import annotations

import time

import pytest

from optimizer.models import ExplainRun
from tests.conftest import PASSWORD
from tests.e2e.browser import ARTIFACTS, browser_page, sign_in
from tests.optimizer.conftest import make_target, plant_workload, wait_for
from tests.optimizer.conftest import pg15 as pg15  # the fixture, shared with tests/optimizer

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
NO_SIDEWAYS_SCROLL = "document.documentElement.scrollWidth <= window.innerWidth"


@pytest.mark.parametrize("width", [1280, 390])
def test_an_operator_explains_a_slow_query_from_the_database_page(live_server, operator_user, pg15, width):
    target = make_target(pg15)
    text = "SELECT c.relname, n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $1"
    plant_workload(target, [(text, 40, 900.0)], database=pg15.name)
    with browser_page(width=width, height=900) as page:
        sign_in(page, live_server.url, operator_user.username, PASSWORD)
        page.goto(f"{live_server.url}/optimizer/database/{target.id}/")
        page.click("[data-testid=db-slow-queries] [data-testid=explain-link]")
        assert page.input_value("#explain-query") == text
        page.click("[data-testid=explain-submit]")
        page.wait_for_selector("[data-testid=plan-tree]")
        assert page.locator("[data-testid=plan-node]").count() >= 2
        assert "force_generic_plan" in page.inner_text("[data-testid=explain-result]")
        assert page.locator("[data-testid=worst-node]").is_visible()
        page.click(".raw-plan summary")
        assert '"Node Type"' in page.inner_text("[data-testid=plan-json]")
        assert page.evaluate(NO_SIDEWAYS_SCROLL), f"sideways scroll at {width} px"
        page.screenshot(path=ARTIFACTS / f"explain-plan-{width}.png", full_page=True)


@pytest.mark.celery_worker
def test_a_ten_second_explain_analyze_is_cancelled_from_its_page(
    live_server, celery_worker_process, operator_user, pg15
):
    target = make_target(pg15)
    with browser_page(width=390, height=900) as page:
        sign_in(page, live_server.url, operator_user.username, PASSWORD)
        page.goto(f"{live_server.url}/optimizer/database/{target.id}/explain/")
        page.fill("#explain-query", "SELECT pg_sleep(10)")
        page.check("input[name=mode][value=analyze]")
        page.click("[data-testid=explain-submit]")
        page.wait_for_selector("[data-testid=explain-run][data-status=running] [data-testid=activity]", timeout=30_000)
        assert "active" in page.inner_text("[data-testid=activity]")
        assert "running for" in page.inner_text("[data-testid=elapsed]")
        run = ExplainRun.objects.get(target=target)
        page.screenshot(path=ARTIFACTS / "explain-analyze-running-390.png", full_page=True)
        clicked = time.monotonic()
        page.click("[data-testid=explain-cancel]")
        gone = "SELECT count(*) FROM pg_stat_activity WHERE pid = %s"
        wait_for(lambda: pg15.scalar(gone, [run.backend_pid]) == 0, timeout=8, what="the backend to be gone")
        print(f"backend gone {time.monotonic() - clicked:.2f} s after Cancel was clicked")
        page.wait_for_selector("[data-testid=explain-run][data-status=cancelled]")
        assert page.evaluate(NO_SIDEWAYS_SCROLL)
        page.screenshot(path=ARTIFACTS / "explain-analyze-cancelled-390.png", full_page=True)
    run.refresh_from_db()
    assert run.status == "cancelled" and run.cancel_requested_by == operator_user.username
