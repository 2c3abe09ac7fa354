"""The Content-Security-Policy breaks nothing: every page, as an operator, loads, draws its charts and runs
its scripts (plotly, htmx, ours, Swagger UI, the Django admin) in Chromium with no CSP violation reported
(in the console or as a securitypolicyviolation event)."""

from __future__ import annotations

import pytest

from tests.conftest import PASSWORD
from tests.e2e.browser import browser_page, sign_in
from tests.e2e.pages import seed_every_page

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

# Recorded from the first script on, so violations during loading are not missed.
LISTEN = """window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', (e) => {
  const where = `${e.sourceFile}:${e.lineNumber}`;
  window.__cspViolations.push(`${e.violatedDirective} blocked ${e.blockedURI || 'inline'} at ${where}`);
});"""


def test_every_page_works_under_the_content_security_policy(live_server, operator_user):
    pages = {"login": "/login/", **seed_every_page(actor=operator_user), "api docs": "/api/v1/docs", "admin": "/admin/"}
    console = []
    with browser_page() as page:
        page.add_init_script(LISTEN)
        page.on("console", lambda message: console.append(message.text))
        sign_in(page, live_server.url, operator_user.username, PASSWORD)
        found = []
        for name, path in pages.items():
            response = page.goto(f"{live_server.url}{path}")
            assert response is not None and response.status < 500, (name, path, response and response.status)
            assert "script-src 'self'" in (response.headers.get("content-security-policy") or ""), name
            page.wait_for_load_state("load")
            page.wait_for_timeout(300)  # plotly draws after DOMContentLoaded
            found += [f"{name}: {v}" for v in page.evaluate("window.__cspViolations")]
    found += [f"console: {text}" for text in console if "Content Security Policy" in text]
    assert found == [], "\n".join(found)
