"""A person creates an API token in Settings, sees it once, copies it, and calls the API with it."""

from __future__ import annotations

import urllib.request

import pytest

from tests.conftest import PASSWORD
from tests.e2e.browser import ARTIFACTS, browser_page, sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_create_token_copy_it_see_it_once_and_call_the_api(live_server, operator_user):
    with browser_page() as page:
        sign_in(page, live_server.url, operator_user.username, PASSWORD)
        page.goto(f"{live_server.url}/settings/")
        page.fill("#id_name", "   ")
        page.click("text=Create token")
        page.wait_for_selector(".field-error")
        assert page.locator(".field-error").first.inner_text() == "This field is required."

        page.fill("#id_name", "browser-made")
        page.click("text=Create token")
        token = page.locator("#new-token-value").inner_text()
        page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
        page.click("[data-testid=copy-token]")
        page.wait_for_selector("text=Copied to the clipboard.")
        assert page.evaluate("navigator.clipboard.readText()") == token
        page.screenshot(path=ARTIFACTS / "settings-token.png", full_page=True)
        assert token.startswith("pp_")

        request = urllib.request.Request(f"{live_server.url}/api/v1/me", headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert b'"role": "operator"' in response.read()

        page.reload()
        assert token not in page.content()  # shown once
        page.once("dialog", lambda dialog: dialog.accept())
        page.click("text=Revoke")
        page.wait_for_selector("text=revoked")
