"""One query's history in a browser: from the Database page's slow query to its page at phone width, both
charts drawn with the apply marked, nothing wider than the screen. Screenshot in tests/artifacts."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from monitoring.models import QueryText, Target
from tests.conftest import PASSWORD
from tests.e2e.browser import ARTIFACTS, browser_page, sign_in
from tests.optimizer.conftest import plant_applied, plant_stat

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
QUERYID = -4_611_686_018_427_387_904
NO_SIDEWAYS_SCROLL = "document.documentElement.scrollWidth <= window.innerWidth"


def test_a_viewer_follows_a_slow_query_to_its_history_on_a_phone(live_server, viewer_user):
    target = Target.objects.create(name="orders-db", kind=Target.Kind.POSTGRES, interval_seconds=60)
    QueryText.objects.create(
        target=target, queryid=QUERYID, query="SELECT * FROM orders WHERE customer_id = $1 ORDER BY created_at DESC"
    )
    now = timezone.now()
    for minutes in range(200, 0, -10):
        slow = minutes > 100
        plant_stat(
            target, QUERYID, at=now - timedelta(minutes=minutes), calls=50, total_ms=50 * (40.0 if slow else 2.0)
        )
    run = plant_applied(
        target,
        at=now - timedelta(minutes=100),
        evidence={"table": "orders", "queries": [{"queryid": QUERYID, "mean_time_ms": 40.0}]},
        title="Create index on orders (customer_id)",
    )
    recommendation = run.recommendation
    with browser_page(width=390, height=900) as page:
        sign_in(page, live_server.url, viewer_user.username, PASSWORD)
        page.goto(f"{live_server.url}/optimizer/database/{target.id}/")
        assert page.locator("[data-testid=workbench-flow] li").count() == 5
        page.click("[data-testid=db-slow-queries] [data-testid=history-link]")
        page.wait_for_selector("[data-testid=calls-chart] .main-svg")
        page.wait_for_selector("[data-testid=mean-time-chart] .main-svg")
        assert page.url.endswith(f"/queries/{QUERYID}/")
        assert f"#{recommendation.id} applied" in page.inner_text("[data-testid=mean-time-chart]")
        assert "Create index on orders" in page.inner_text("[data-testid=applied-markers]")
        assert page.evaluate(NO_SIDEWAYS_SCROLL), "sideways scroll at 390 px"
        page.screenshot(path=ARTIFACTS / "query-history-390.png", full_page=True)
