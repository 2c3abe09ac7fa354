"""A first login lands on the Overview, whose charts update in place (HTMX), without a page
reload, as new samples arrive."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from monitoring.models import Series
from monitoring.services.targets import TargetInput, target_create
from monitoring.storage import SeriesSpec, samples_write, series_resolve
from tests.conftest import PASSWORD
from tests.e2e.browser import ARTIFACTS, browser_page, wait_for_js

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("clean_samples")]

POINTS_JS = """() => {
  const chart = document.querySelector('[data-target="web-1"] .chart');
  return chart && chart.data ? chart.data[0].x.length : -1;
}"""


def _write_cpu(series_id: int, minutes_ago: list[int]) -> None:
    now = timezone.now()
    samples_write([(series_id, now - timedelta(minutes=m), 20.0 + m) for m in minutes_ago])


def test_first_login_lands_on_the_overview_whose_charts_update_without_a_reload(live_server, viewer_user):
    target = target_create(data=TargetInput(name="web-1", kind="host", pinned=True), actor=None, via="system")
    (cpu,) = series_resolve(
        target_id=target.id, specs=[SeriesSpec("host_cpu_percent", {"cpu": "total"}, Series.Kind.RATE, "%")]
    )
    _write_cpu(cpu, [50, 40, 30])
    with browser_page() as page:
        page.goto(f"{live_server.url}/")
        assert "/login/" in page.url  # never signed in: the Overview sends us to the login first
        page.fill("#id_username", viewer_user.username)
        page.fill("#id_password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{live_server.url}/")
        assert page.locator("h1").inner_text() == "Overview"
        wait_for_js(page, f"({POINTS_JS})() === 3")
        page.evaluate("window.__noReload = true")
        _write_cpu(cpu, [20, 10, 1])
        wait_for_js(page, f"({POINTS_JS})() === 6", timeout=20_000)
        assert page.evaluate("window.__noReload") is True
        page.screenshot(path=ARTIFACTS / "overview-live-charts.png", full_page=True)
