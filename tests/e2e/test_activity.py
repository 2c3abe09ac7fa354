"""Live activity in a browser, at 1280 and 390 px: a running query appears by itself (HTMX polling), and an
operator cancels it after confirming. Screenshots in tests/artifacts."""

from __future__ import annotations

import os

import pytest

from tests.conftest import PASSWORD
from tests.e2e.browser import ARTIFACTS, browser_page, sign_in, wait_for_js
from tests.optimizer.conftest import make_target
from tests.optimizer.conftest import pg18 as pg18  # the fixture, shared with tests/optimizer
from tests.optimizer.test_activity import running

pytestmark = pytest.mark.e2e
MARK = f"pp_e2e_activity_{os.getpid()}"
NO_HORIZONTAL_SCROLL = "document.documentElement.scrollWidth <= window.innerWidth"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("width", [1280, 390])
def test_operator_sees_a_query_appear_and_cancels_it(live_server, operator_user, pg18, width):
    target = make_target(pg18, name="orders-db")
    with browser_page(width=width, height=900) as page:
        sign_in(page, live_server.url, operator_user.username, PASSWORD)
        page.goto(f"{live_server.url}/optimizer/database/{target.id}/activity/")
        page.wait_for_selector("[data-testid=running]")
        with running(pg18, f"SELECT pg_sleep(60) /* {MARK} */") as (pid, raised):
            row = f"[data-testid=running] [data-testid=backend][data-pid='{pid}']"
            page.wait_for_selector(row, timeout=15_000)  # the next poll brings it in, no reload
            assert MARK in page.locator(row).inner_text()
            assert page.evaluate(NO_HORIZONTAL_SCROLL), f"horizontal scroll at {width} px"
            page.screenshot(path=ARTIFACTS / f"activity-{width}.png", full_page=True)
            dialogs = []
            page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.accept()))
            page.click(f"{row} [data-testid=cancel]")
            page.wait_for_selector("[data-testid=signal-result]")
            assert f"backend {pid}" in dialogs[0] and MARK in dialogs[0]
            wait_for_js(page, f'!document.querySelector("{row}")')  # listed again at once, without it
            assert raised and "cancel" in str(raised[0]).lower()
