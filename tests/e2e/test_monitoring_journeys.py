"""An operator adds a PostgreSQL server, tests the connection, sees its charts and its slow queries."""

from __future__ import annotations

import psycopg
import pytest

from monitoring.models import Target
from monitoring.services.collection import collect_target
from tests.conftest import PASSWORD, _test_database_url
from tests.e2e.browser import ARTIFACTS, browser_page, sign_in, wait_for_js

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("clean_samples")]

WORKLOAD = "SELECT count(*) FROM generate_series(1, 200000) AS journey_probe"


def test_add_a_postgres_target_see_its_charts_and_slow_queries(live_server, operator_user):
    # The test server has pg_stat_statements preloaded, as slow queries need; the machine's
    # PostgreSQL 15 (without it) is covered by the collector tests.
    monitored_dsn = _test_database_url()
    with browser_page() as page:
        sign_in(page, live_server.url, operator_user.username, PASSWORD)
        page.click("nav >> text=Monitoring")
        page.fill("#id_name", "shop-db")
        page.select_option("#id_kind", "postgres")
        page.fill("#id_url", monitored_dsn)
        page.click("text=Add target")
        page.wait_for_selector("h1 >> text=shop-db")
        page.click("text=Test connection")
        page.wait_for_selector("#test-result >> text=PostgreSQL 18")

        # Beat's collections, run here so the test does not wait for the schedule: a baseline,
        # then a workload on the monitored server, then the collection that sees its deltas.
        target = Target.objects.get(name="shop-db")
        assert collect_target(target=target).ok
        with psycopg.connect(monitored_dsn, autocommit=True) as conn:
            for _ in range(5):
                conn.execute(WORKLOAD)
        target.refresh_from_db()
        assert collect_target(target=target).ok

        page.reload()
        page.wait_for_selector(".chart-card .chart .main-svg")  # plotly drew the charts
        assert page.locator(".chart-card").count() >= 5
        page.screenshot(path=ARTIFACTS / "journey-postgres-target.png", full_page=True)

        page.click("text=Slow queries")
        row = page.locator("[data-testid=slow-queries] tbody tr", has_text="journey_probe")
        row.first.wait_for()
        assert row.first.locator("td.num").first.inner_text() == "5"  # the calls of this window only
        page.screenshot(path=ARTIFACTS / "journey-slow-queries.png", full_page=True)


@pytest.mark.parametrize("width", [1280, 390])
def test_add_target_form_reports_every_problem_at_once_and_takes_focus_there(live_server, operator_user, width):
    with browser_page(width=width) as page:
        sign_in(page, live_server.url, operator_user.username, PASSWORD)
        page.goto(f"{live_server.url}/monitoring/")
        page.select_option("#id_kind", "redis")
        page.fill("#id_url", "http://cache:6379")
        page.fill("#id_timeout_seconds", "30")
        page.click("text=Add target")

        summary = page.locator("[data-error-summary]")
        summary.wait_for()
        assert page.evaluate("document.activeElement.hasAttribute('data-error-summary')")
        problems = summary.locator("li").all_inner_texts()
        assert len(problems) == 3, problems  # name, URL and timeout in the first answer
        page.screenshot(path=ARTIFACTS / f"journey-add-target-errors-{width}.png", full_page=True)

        summary.locator("a", has_text="URL").click()
        assert page.evaluate("document.activeElement.id") == "id_url"
        assert not Target.objects.filter(kind="redis").exists()


def test_add_target_url_field_shows_the_example_of_the_chosen_kind(live_server, operator_user):
    with browser_page(width=1280) as page:
        sign_in(page, live_server.url, operator_user.username, PASSWORD)
        page.goto(f"{live_server.url}/monitoring/")
        page.select_option("#id_kind", "prometheus")
        assert page.get_attribute("#id_url", "placeholder") == "http://exporter:9100/metrics"
        page.select_option("#id_kind", "redis")
        assert page.get_attribute("#id_url", "placeholder") == "redis://:password@cache:6379/0"


def _no_horizontal_scroll(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


@pytest.mark.parametrize("width", [1280, 390])
def test_with_thousands_of_targets_the_pages_summarise_page_and_search_them(live_server, operator_user, width):
    Target.objects.bulk_create(
        Target(
            name=f"fleet-{i:04d}",
            kind=("postgres", "redis", "prometheus")[i % 3],
            status=Target.Status.DOWN if i % 50 == 0 else Target.Status.UP,
            consecutive_failures=i // 50 if i % 50 == 0 else 0,
            last_error="connection refused by a-rather-long-host-name.fleet.internal:9100" if i % 50 == 0 else "",
            pinned=i == 7,
        )
        for i in range(3000)
    )
    with browser_page(width=width) as page:
        sign_in(page, live_server.url, operator_user.username, PASSWORD)
        summary = page.locator("[data-testid=target-summary]")
        assert "2999 enabled, neither built-in nor pinned" in summary.inner_text()
        assert page.locator(".target-block[data-target=fleet-0007]").count() == 1
        assert page.locator("[data-testid=worst-down] tbody tr").count() == 10
        assert _no_horizontal_scroll(page)
        page.screenshot(path=ARTIFACTS / f"thousands-overview-{width}.png", full_page=True)

        summary.locator("a", has_text="All 60 down targets").click()
        page.wait_for_selector("[data-testid=target-count] >> text=60 targets match")
        assert page.locator("[data-testid=targets] tbody tr").count() == 50
        assert _no_horizontal_scroll(page)
        page.screenshot(path=ARTIFACTS / f"thousands-targets-down-{width}.png")
        page.locator("[data-testid=target-pages] a", has_text="Next").click()
        page.wait_for_selector("text=Page 2 of 2")
        assert page.locator("[data-testid=targets] tbody tr").count() == 10

        page.goto(f"{live_server.url}/alerts/rules/new/")
        page.locator("#id_target_id").press_sequentially("fleet-299", delay=30)
        wait_for_js(page, "document.querySelectorAll('#id_target_id-options option').length === 10")
        assert page.locator("#id_target_id-options option").first.get_attribute("value") == "fleet-2990"
        assert _no_horizontal_scroll(page)
        page.locator("#id_target_id").scroll_into_view_if_needed()
        page.screenshot(path=ARTIFACTS / f"thousands-rule-target-{width}.png")
