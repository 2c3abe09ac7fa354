"""Keyboard use: every visible control is reached by Tab with a visible focus ring, at desktop and phone
width, and the phone menu opens, is walked and closes from the keyboard."""

from __future__ import annotations

import pytest

from tests.conftest import PASSWORD
from tests.e2e.browser import ARTIFACTS, browser_page, sign_in
from tests.e2e.pages import seed_every_page

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

# Marks every visible control with data-kb (its index) and answers how many there are.
MARK_CONTROLS_JS = """() => {
  const selector = 'a[href], button:not([disabled]), input:not([type=hidden]):not([disabled]), select, textarea, '
    + 'summary, [tabindex]:not([tabindex="-1"])';
  const controls = Array.from(document.querySelectorAll(selector)).filter(
    (el) => el.checkVisibility({visibilityProperty: true}) && el.getBoundingClientRect().width > 0
  );
  // A toolbar (a chart's) is one Tab stop whose arrow keys reach the rest: count its buttons as one.
  controls.forEach((el, i) => el.setAttribute('data-kb', String(i)));
  controls.forEach((el) => {
    const bar = el.closest('[role=toolbar]');
    if (bar && el !== bar.querySelector('[tabindex="0"]')) el.setAttribute('data-kb', 'in-toolbar');
  });
  return controls.map((el) => (el.getAttribute('data-kb') === 'in-toolbar' ? null : el.outerHTML.slice(0, 90)));
}"""
# The focused control's data-kb, and whether its focus is drawn (an outline or a ring of shadow).
FOCUSED_JS = """() => {
  const el = document.activeElement;
  if (!el || el === document.body) return null;
  const style = getComputedStyle(el);
  const drawn = (style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) > 0) || style.boxShadow !== 'none';
  return {kb: el.getAttribute('data-kb'), drawn: drawn, html: el.outerHTML.slice(0, 90)};
}"""
PAGES = (
    "overview",
    "monitoring",
    "target",
    "optimizer",
    "scaled service",
    "alerts",
    "alert rule",
    "channels",
    "settings",
)


def tab_walk(page, limit: int) -> list[dict]:
    """Press Tab until focus leaves the page (or comes round again); answer each stop."""
    stops = []
    page.evaluate("() => document.activeElement && document.activeElement.blur()")
    for _ in range(limit):
        page.keyboard.press("Tab")
        focused = page.evaluate(FOCUSED_JS)
        if focused is None or (stops and focused["kb"] == stops[0]["kb"]):
            break
        stops.append(focused)
    return stops


@pytest.mark.parametrize("width", [1280, 390])
def test_every_visible_control_is_reached_by_tab_with_a_visible_focus(live_server, operator_user, width):
    pages = seed_every_page(actor=operator_user)
    problems = []
    with browser_page(width=width) as page:
        sign_in(page, live_server.url, operator_user.username, PASSWORD)
        for name in PAGES:
            page.goto(f"{live_server.url}{pages[name]}")
            page.wait_for_load_state("load")
            page.wait_for_timeout(300)
            controls = page.evaluate(MARK_CONTROLS_JS)
            assert len(controls) > 5, f"{name}: the page shows almost nothing to act on"
            stops = tab_walk(page, limit=len(controls) + 20)
            reached = {stop["kb"] for stop in stops}
            problems += [
                f"{name} {width}px: never focused: {html}"
                for i, html in enumerate(controls)
                if html is not None and str(i) not in reached
            ]
            problems += [f"{name} {width}px: focus not drawn on {stop['html']}" for stop in stops if not stop["drawn"]]
    assert problems == [], "\n".join(problems)


def test_phone_menu_opens_is_walked_and_closes_from_the_keyboard(live_server, viewer_user):
    with browser_page(width=390) as page:
        sign_in(page, live_server.url, viewer_user.username, PASSWORD)
        menu_button = page.locator("button.nav-toggle")
        assert page.locator("#main-nav").is_hidden()

        page.keyboard.press("Tab")  # skip link
        page.keyboard.press("Tab")  # brand
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.classList.contains('nav-toggle')")
        page.keyboard.press("Enter")
        assert menu_button.get_attribute("aria-expanded") == "true"
        assert page.locator("#main-nav").is_visible()
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.textContent") == "Overview"
        page.screenshot(path=ARTIFACTS / "keyboard-phone-menu.png")

        page.keyboard.press("Escape")
        assert menu_button.get_attribute("aria-expanded") == "false"
        assert page.locator("#main-nav").is_hidden()
        assert page.evaluate("document.activeElement.classList.contains('nav-toggle')")

        page.keyboard.press("Enter")
        for _ in range(2):
            page.keyboard.press("Tab")  # Overview, Monitoring
        page.keyboard.press("Enter")
        page.wait_for_url(f"{live_server.url}/monitoring/")


def test_skip_link_moves_focus_to_the_content(live_server, viewer_user):
    with browser_page() as page:
        sign_in(page, live_server.url, viewer_user.username, PASSWORD)
        page.keyboard.press("Tab")
        assert page.locator(".skip-link").is_visible()
        page.keyboard.press("Enter")
        assert page.evaluate("document.activeElement.id") == "content"
