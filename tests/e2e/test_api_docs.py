"""The API docs page draws every operation in Chromium, from Perfpilot's own static files."""

from __future__ import annotations

import pytest

from tests.conftest import PASSWORD
from tests.e2e.browser import ARTIFACTS, browser_page, sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize("width", [1280, 390])
def test_api_docs_render_the_operations_without_errors(live_server, viewer_user, width):
    with browser_page(width=width) as page:
        outside_requests = []
        page.on(
            "request",
            lambda request: None if request.url.startswith(live_server.url) else outside_requests.append(request.url),
        )
        sign_in(page, live_server.url, viewer_user.username, PASSWORD)
        page.goto(f"{live_server.url}/api/docs")
        page.wait_for_selector(".opblock-summary-path", timeout=30_000)
        page.screenshot(path=ARTIFACTS / f"api-docs-{width}.png")

        paths = page.locator(".opblock-summary-path").all_inner_texts()
        assert "/api/v1/performance/status" in paths
        assert len(paths) > 40
        assert page.locator(".errors-wrapper").count() == 0  # Swagger UI's "Errors" box (e.g. a parser error)
        assert outside_requests == []
