"""The Cache page's hot/cold keys and compressible values on a phone (390 px): readable, no sideways scroll."""

from __future__ import annotations

import pytest

from tests.conftest import PASSWORD
from tests.e2e.browser import ARTIFACTS, browser_page, sign_in
from tests.e2e.pages import seed_cache_analysis

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

NO_HORIZONTAL_SCROLL = "document.documentElement.scrollWidth <= window.innerWidth"


def test_on_a_phone_hot_cold_keys_and_compressible_values_fit_and_label_their_cells(live_server, viewer_user):
    cache = seed_cache_analysis(actor=None)
    with browser_page(width=390) as page:
        sign_in(page, live_server.url, viewer_user.username, PASSWORD)
        page.goto(f"{live_server.url}/optimizer/cache/{cache.id}/")
        hot_cold = page.locator("[data-testid=hot-cold-keys]")
        compressible = page.locator("[data-testid=compressible-values]")
        assert hot_cold.get_by_role("heading", name="Hot and cold keys").is_visible()
        assert compressible.get_by_role("heading", name="Compressible values").is_visible()
        assert hot_cold.get_by_text("config:feature-flags:production").is_visible()
        saving = compressible.locator("td", has_text="(zstd)")
        assert saving.get_attribute("data-label") == "Estimated saving"
        assert saving.inner_text().startswith("145.0")  # 152,000,000 bytes as people read them
        page.screenshot(path=ARTIFACTS / "cache-keys-390.png", full_page=True)
        assert page.evaluate(NO_HORIZONTAL_SCROLL)
