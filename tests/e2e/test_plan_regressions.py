"""A plan regression in a browser: from the Database page's Plan changes to both plans, side by side
at desktop width and one above the other on a phone, with no sideways scroll. Screenshots in
tests/artifacts."""

from __future__ import annotations

import pytest
from django.utils import timezone

from monitoring.models import Target
from monitoring.services.targets import TargetInput, target_create
from tests.conftest import PASSWORD
from tests.e2e.browser import ARTIFACTS, browser_page, sign_in
from tests.e2e.pages import seed_plan_regression

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
NO_SIDEWAYS_SCROLL = "document.documentElement.scrollWidth <= window.innerWidth"


@pytest.mark.parametrize("width", [1280, 390])
def test_both_plans_of_a_regression_are_side_by_side_on_a_desktop_and_stacked_on_a_phone(
    live_server, viewer_user, width
):
    target: Target = target_create(
        data=TargetInput(name="shop-db", kind="postgres", url="postgresql://shop@127.0.0.1:9/shop"),
        actor=None,
        via="system",
    )
    seed_plan_regression(target, now=timezone.now())
    with browser_page(width=width, height=900) as page:
        sign_in(page, live_server.url, viewer_user.username, PASSWORD)
        page.goto(f"{live_server.url}/optimizer/database/{target.id}/")
        page.click("[data-testid=plan-changes] [data-testid=plan-regression-link]")
        page.wait_for_selector("[data-testid=plan-compare]")
        before = page.locator("[data-testid=plan-before]").bounding_box()
        after = page.locator("[data-testid=plan-after]").bounding_box()
        if width == 1280:
            assert after["x"] > before["x"] + before["width"] / 2 and abs(after["y"] - before["y"]) < 1
        else:
            assert after["y"] >= before["y"] + before["height"] and abs(after["x"] - before["x"]) < 1
        assert "orders_customer_id_idx" in page.inner_text("[data-testid=plan-before]")
        assert "Seq Scan" in page.inner_text("[data-testid=plan-after]")
        assert "enable_indexscan=off" in page.inner_text("[data-testid=plan-after]")
        assert page.evaluate(NO_SIDEWAYS_SCROLL), f"sideways scroll at {width} px"
        page.screenshot(path=ARTIFACTS / f"plan-regression-{width}.png", full_page=True)
