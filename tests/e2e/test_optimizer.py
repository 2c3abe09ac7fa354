"""The Optimizer in a browser: an operator applies advice (confirming), the result arrives live through
HTMX from the real Celery worker, and the log and Database pages show it. Screenshots in tests/artifacts."""

from __future__ import annotations

import pytest

from optimizer.models import Recommendation
from optimizer.services.runs import run_create, run_execute
from tests.conftest import PASSWORD
from tests.e2e.browser import ARTIFACTS, browser_page
from tests.optimizer.conftest import make_dead_tuples, make_target
from tests.optimizer.conftest import pg15 as pg15  # the fixture, shared with tests/optimizer

pytestmark = [pytest.mark.e2e, pytest.mark.celery_worker]


def test_operator_applies_advice_and_sees_the_result_live(live_server, celery_worker_process, operator_user, pg15):
    with pg15.connect() as conn:
        conn.execute("DROP TABLE IF EXISTS e2e_child, e2e_parent")
        conn.execute("CREATE TABLE e2e_parent (id int PRIMARY KEY)")
        conn.execute('CREATE TABLE e2e_child (id int PRIMARY KEY, "Parent Id" int REFERENCES e2e_parent)')
    make_dead_tuples(pg15, "public", "e2e_dead", rows=5000, deleted=4000)
    target = make_target(pg15, name="orders-db")
    for tuner, params in (("indexes", {}), ("vacuum", {"min_dead_tuples": 100, "tables": ["public.e2e_dead"]})):
        run_execute(
            run_id=run_create(
                tuner=tuner, target=target, trigger="operator", actor=None, dry_run=False, params=params
            ).id
        )
    advice = Recommendation.objects.get(target=target, category="fk_index", title__contains="e2e_child")
    with browser_page(height=1000) as page:
        page.goto(f"{live_server.url}/login/")
        page.fill("#id_username", operator_user.username)
        page.fill("#id_password", PASSWORD)
        page.click("button[type=submit]")
        page.goto(f"{live_server.url}/optimizer/")
        page.screenshot(path=ARTIFACTS / "optimizer-recommendations.png", full_page=True)
        dialogs = []
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.accept()))
        page.click(f"#recommendation-{advice.id} [data-testid=apply]")
        page.wait_for_selector(f"#apply-result-{advice.id} [data-status=succeeded]", timeout=60_000)
        assert "e2e_child" in dialogs[0]
        page.screenshot(path=ARTIFACTS / "optimizer-applied.png", full_page=True)
        advice.refresh_from_db()
        assert advice.status == "applied"

        page.goto(f"{live_server.url}/optimizer/log/?q=e2e_dead")
        page.click("[data-testid=runs] a")
        page.wait_for_function("document.querySelector('[data-testid=before-after]').data !== undefined")
        page.screenshot(path=ARTIFACTS / "optimizer-run-before-after.png", full_page=True)

        page.goto(f"{live_server.url}/optimizer/database/{target.id}/")
        assert page.locator("[data-testid=vacuum-status]").inner_text().count("e2e_dead") == 1
        page.screenshot(path=ARTIFACTS / "optimizer-database.png", full_page=True)
        page.goto(f"{live_server.url}/optimizer/log/")
        page.screenshot(path=ARTIFACTS / "optimizer-log.png", full_page=True)
