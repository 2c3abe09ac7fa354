"""A person signs in with Debian's Chromium and sees the Overview."""

from __future__ import annotations

import pytest

from tests.e2e.browser import ARTIFACTS, browser_page

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_login_then_overview_on_desktop_and_phone(
    live_server, viewer_user, celery_worker_process, celery_beat_process, scheduler_process
):
    with browser_page(width=1280, height=800) as page:
        page.goto(f"{live_server.url}/")
        assert "/login/" in page.url
        page.screenshot(path=ARTIFACTS / "login.png", full_page=True)
        page.fill("#id_username", "vera-viewer")
        page.fill("#id_password", "correct-horse-battery")
        page.click("button[type=submit]")
        page.wait_for_url(f"{live_server.url}/")
        page.wait_for_selector("[data-component=database]")
        assert page.locator("h1").inner_text() == "Overview"
        assert page.locator("[data-testid=overall-status]").inner_text().startswith("All systems operational")
        page.wait_for_selector(".chart .main-svg")  # plotly drew the latency chart from our static file
        page.screenshot(path=ARTIFACTS / "overview.png", full_page=True)

        page.set_viewport_size({"width": 390, "height": 844})
        page.reload()
        page.wait_for_selector("[data-component=database]")
        assert page.locator(".nav").is_hidden()  # collapsed behind the menu button on a phone
        page.screenshot(path=ARTIFACTS / "overview-phone.png", full_page=True)


def test_wrong_password_shows_the_error(live_server, viewer_user):
    with browser_page() as page:
        page.goto(f"{live_server.url}/login/")
        page.fill("#id_username", "vera-viewer")
        page.fill("#id_password", "wrong")
        page.click("button[type=submit]")
        assert "correct username and password" in page.locator(".error-box").inner_text()
