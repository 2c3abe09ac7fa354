"""The Space section of the Database page in a browser at phone width: sizes, growth and bloat read as
rows, the total-size chart is drawn, and nothing scrolls sideways. Screenshot in tests/artifacts."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from monitoring.services.targets import TargetInput, target_create
from optimizer.services.space import relation_sizes_record
from tests.conftest import PASSWORD
from tests.e2e.browser import ARTIFACTS, browser_page, sign_in, wait_for_js

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_a_viewer_reads_sizes_growth_and_bloat_on_a_phone(live_server, viewer_user):
    target = target_create(
        data=TargetInput(name="billing-db", kind="postgres", url="postgresql://app:secret@db.internal:5432/billing"),
        actor=None,
        via="system",
    )
    for back in range(14):
        relation_sizes_record(
            target=target,
            day=timezone.localdate() - timedelta(days=13 - back),
            rows=[
                {"schema": "ledger", "name": "invoice_line_items_archive_2026", "kind": "table", "rows": 9_000_000}
                | {"bytes": 30_000_000_000 + back * 500_000_000, "relation_bytes": 20_000_000_000}
                | {"bloat_bytes": 7_000_000_000, "bloat_source": "pgstattuple"}
            ],
        )
    with browser_page(width=390, height=900) as page:
        sign_in(page, live_server.url, viewer_user.username, PASSWORD)
        page.goto(f"{live_server.url}/optimizer/database/{target.id}/")
        section = page.locator("[data-testid=space]")
        text = section.inner_text()
        assert "ledger.invoice_line_items_archive_2026" in text
        assert "35.0 %" in text and "476.8 MB" in text.replace("\xa0", " ")  # bloat, growth per day (500 MB)
        wait_for_js(page, "document.querySelector('[data-testid=space-chart] .main-svg') !== null")
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), "sideways scroll at 390 px"
        section.screenshot(path=ARTIFACTS / "database-space-390.png")
