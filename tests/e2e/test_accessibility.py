"""axe-core over every page, as an operator and as a viewer, at desktop and phone width: no serious or
critical violation. Screenshots of every page land in tests/artifacts/a11y-*.png."""

from __future__ import annotations

import pytest
from axe_playwright_python.sync_playwright import Axe

from tests.conftest import PASSWORD
from tests.e2e.browser import ARTIFACTS, browser_page, sign_in
from tests.e2e.pages import seed_every_page

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

BLOCKING_IMPACTS = ("serious", "critical")
WIDTHS = (1280, 390)


def blocking_violations(page, where: str) -> list[str]:
    """axe's serious and critical findings on the page, one line each: where, rule, elements."""
    results = Axe().run(page)
    found = []
    for violation in results.response["violations"]:
        if violation["impact"] in BLOCKING_IMPACTS:
            targets = ", ".join(str(node["target"]) for node in violation["nodes"][:3])
            found.append(f"{where}: {violation['id']} ({violation['impact']}) {violation['help']} at {targets}")
    return found


def axe_walk(page, base_url: str, pages: dict[str, str], *, label: str) -> list[str]:
    """axe's blocking findings on every page, a page wider than the window, and any error a page wrote
    to the browser console (htmx, plotly and our scripts report their failures there), other than a
    404 page's own status."""
    found = []
    console_errors: list[str] = []
    page.on("console", lambda message: console_errors.append(message.text) if message.type == "error" else None)
    for name, path in pages.items():
        console_errors.clear()
        response = page.goto(f"{base_url}{path}")
        page.wait_for_load_state("load")
        page.wait_for_timeout(300)  # plotly draws after DOMContentLoaded
        on_page = blocking_violations(page, f"{name} ({path}) {label}")
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        if overflow > 0:
            on_page.append(f"{name} ({path}) {label}: {overflow} px wider than the window (sideways scroll)")
        own_status = f"status of {response.status}" if response.status >= 400 else None
        on_page += [
            f"{name} ({path}) {label}: console error: {text}"
            for text in console_errors
            if not (own_status and own_status in text)
        ]
        if on_page:  # the picture of what was found; a full-page shot of every page cost a minute a run
            page.screenshot(path=ARTIFACTS / f"a11y-{label}-{name.replace(' ', '-')}.png", full_page=True)
        found += on_page
    return found


# Posts a form as the page would (CSRF token from <body hx-headers>), so a viewer meets the 403 page.
POST_FORM_JS = """(action) => {
  const form = document.createElement('form');
  form.method = 'post';
  form.action = action;
  const token = JSON.parse(document.body.getAttribute('hx-headers'))['X-CSRFToken'];
  form.innerHTML = `<input type="hidden" name="csrfmiddlewaretoken" value="${token}">`;
  document.body.append(form);
  form.submit();
}"""


def forbidden_page_violations(page, base_url: str, path: str, *, label: str) -> list[str]:
    page.goto(f"{base_url}/")
    with page.expect_navigation():
        page.evaluate(POST_FORM_JS, path)
    assert page.locator("h1", has_text="Your role may not do this").is_visible()
    page.screenshot(path=ARTIFACTS / f"a11y-{label}-forbidden.png", full_page=True)
    return blocking_violations(page, f"forbidden (POST {path}) {label}")


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("role", ["operator", "viewer"])
def test_every_page_has_no_serious_accessibility_violation(live_server, operator_user, viewer_user, role, width):
    pages = seed_every_page(actor=operator_user)
    user = operator_user if role == "operator" else viewer_user
    with browser_page(width=width) as page:
        sign_in(page, live_server.url, user.username, PASSWORD)
        found = axe_walk(page, live_server.url, pages, label=f"{role}-{width}")
        if role == "viewer":
            found += forbidden_page_violations(
                page, live_server.url, pages["target"] + "delete/", label=f"viewer-{width}"
            )
    assert found == [], "\n".join(found)


@pytest.mark.parametrize("width", WIDTHS)
def test_sign_in_page_has_no_serious_accessibility_violation(live_server, width):
    with browser_page(width=width) as page:
        found = axe_walk(page, live_server.url, {"login": "/login/"}, label=f"anonymous-{width}")
    assert found == [], "\n".join(found)
