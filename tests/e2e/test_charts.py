"""Charts in Chromium: a toolbar that cannot send a figure anywhere and is one Tab stop per chart."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from monitoring.models import Series
from monitoring.services.targets import TargetInput, target_create
from monitoring.storage import SeriesSpec, samples_write, series_resolve
from tests.conftest import PASSWORD
from tests.e2e.browser import ARTIFACTS, browser_page, sign_in, wait_for_js

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("clean_samples")]

ALLOWED_BUTTONS = {"Download plot as a PNG", "Zoom", "Zoom in", "Zoom out", "Reset axes"}

CHARTS_DRAWN_JS = """() => {
  const charts = [...document.querySelectorAll('[data-figure]')];
  return charts.length > 0 && charts.every(c => c.querySelector('.modebar-btn'));
}"""


def _hosts_with_history(count: int) -> None:
    now = timezone.now()
    rows = []
    for index in range(count):
        target = target_create(
            data=TargetInput(name=f"web-{index}", kind="host", pinned=True), actor=None, via="system"
        )
        specs = [
            SeriesSpec("host_cpu_percent", {"cpu": "total"}, Series.Kind.RATE, "%"),
            SeriesSpec("host_memory_used_percent", {}, Series.Kind.GAUGE, "%"),
            SeriesSpec("host_swap_used_percent", {}, Series.Kind.GAUGE, "%"),
            SeriesSpec("host_disk_used_percent", {"mount": "/"}, Series.Kind.GAUGE, "%"),
        ]
        for series_id in series_resolve(target_id=target.id, specs=specs):
            rows += [(series_id, now - timedelta(minutes=m), 20.0 + m) for m in range(0, 30, 5)]
    samples_write(rows)


@pytest.mark.parametrize("width", [1280, 390])
def test_chart_toolbars_offer_no_upload_and_are_one_tab_stop_each(live_server, viewer_user, width):
    _hosts_with_history(3)  # 3 pinned hosts x 3 key charts + the health chart: 10 toolbars of 5 buttons
    with browser_page(width=width) as page:
        requested = []
        page.on("request", lambda request: requested.append(request.url))
        sign_in(page, live_server.url, viewer_user.username, PASSWORD)
        wait_for_js(page, CHARTS_DRAWN_JS)
        page.wait_for_load_state("networkidle")
        assert [url for url in requested if not url.startswith(live_server.url)] == []  # nothing from another host
        charts = page.locator("[data-figure]")
        assert charts.count() == 10

        titles = set(page.eval_on_selector_all(".modebar-btn", "bs => bs.map(b => b.getAttribute('data-title'))"))
        assert titles == ALLOWED_BUTTONS  # no "Edit in Chart Studio", no cloud link, no logo
        assert page.locator(".modebar a[href], .modebar-btn--logo").count() == 0

        # Every stop of the Tab sequence, until focus comes back round: each toolbar is one stop (its
        # first button), so the 50 toolbar buttons cost 10 stops, not 50.
        focusable = page.evaluate(
            "() => document.querySelectorAll('a[href], button, input, select, textarea, [tabindex]').length"
        )
        page.evaluate("() => document.querySelectorAll('*').forEach((el, i) => el.setAttribute('data-stop', i))")
        stops = []
        for _ in range(focusable + 2):
            page.keyboard.press("Tab")
            stop = page.evaluate(
                "() => [document.activeElement.getAttribute('data-stop'),"
                " document.activeElement.getAttribute('data-title') || '']"
            )
            if stops and stop[0] == stops[0][0]:
                break  # round once
            stops.append(stop)
        toolbar_stops = [title for _, title in stops if title]
        assert toolbar_stops == ["Download plot as a PNG"] * 10  # one stop per chart, its first button
        assert page.locator(".modebar-btn").count() == 50

        # Inside a toolbar the arrow keys move between its buttons, and the focused toolbar shows.
        first = page.locator(".modebar-btn").first
        first.focus()
        page.keyboard.press("ArrowRight")
        assert page.evaluate("() => document.activeElement.getAttribute('data-title')") == "Zoom"
        assert page.locator(".modebar").first.get_attribute("role") == "toolbar"

        # Keyboard and screen-reader users get each chart's name and latest values instead.
        label = charts.nth(1).get_attribute("aria-label")
        assert charts.nth(1).get_attribute("role") == "figure"
        assert label.startswith("CPU, chart; latest ") and label.endswith("%")

        # The toolbar shows when the pointer is over a chart.
        charts.nth(1).hover()
        page.wait_for_timeout(400)
        page.screenshot(path=ARTIFACTS / f"overview-chart-toolbar-{width}.png", full_page=False)
