"""In the browser: create a rule, replay it with what-if, then enable the service."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from monitoring.storage import SeriesSpec, samples_write, series_resolve
from scaling.models import ScaledService, ScalingRule
from scaling.services.crud import ServiceInput, service_create
from scaling.services.evaluation import scaling_tick
from tests.conftest import PASSWORD
from tests.e2e.browser import ARTIFACTS, browser_page, wait_for_js
from tests.scaling.servers import RecordingWebhook, serving

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("clean_samples")]

WHATIF_REPLICAS_JS = """() => {
  const chart = document.querySelector('#whatif-result .chart');
  if (!chart || !chart.data) return null;
  const trace = chart.data.find(t => t.name === 'replicas (what-if)');
  return trace ? Array.from(trace.y) : null;
}"""


def test_create_rule_replay_it_then_enable(live_server, operator_user):
    hook = RecordingWebhook()
    (series,) = series_resolve(target_id=None, specs=[SeriesSpec("checkout_load", {})])
    now = timezone.now()
    burst = [40] * 20 + [160] * 15 + [40] * 25  # one point a minute for the last hour
    samples_write([(series, now - timedelta(minutes=60 - i), value) for i, value in enumerate(burst)])
    with serving(hook) as url:
        service_create(
            data=ServiceInput(
                name="checkout",
                executor_kind="webhook",
                executor_config={"url": url},
                min_replicas=2,
                max_replicas=12,
                dry_run=False,
            ),
            actor=operator_user,
            via="system",
        )
        with browser_page(height=1100) as page:
            page.goto(f"{live_server.url}/login/?next=/scaling/services/checkout/")
            page.fill("#id_username", operator_user.username)
            page.fill("#id_password", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_selector("text=No rules yet.")

            page.click("[data-testid=add-rule] summary")
            form = page.locator("[data-testid=add-rule] form")
            form.locator("#id_new_rule_name").fill("load")
            form.locator("#id_new_rule_source").select_option("promql")  # each source shows the fields it reads
            assert form.locator("#id_new_rule_expression").is_visible()
            assert not form.locator("#id_new_rule_series_id").is_visible()
            form.locator("#id_new_rule_source").select_option("series")
            assert not form.locator("#id_new_rule_expression").is_visible()
            form.locator("#id_new_rule_series_id").select_option(label="no target · checkout_load")  # by name
            form.locator("#id_new_rule_target_value").fill("0")
            form.locator("button[type=submit]").click()
            page.wait_for_selector("text=The target value must be above 0.")  # the editor's field error
            form = page.locator("[data-testid=add-rule] form")
            form.locator("#id_new_rule_target_value").fill("50")
            form.locator("button[type=submit]").click()
            page.wait_for_selector('[data-rule="load"]')

            page.select_option("[data-testid=whatif-form] select[name=range]", "1h")
            page.click("[data-testid=whatif-form] button")
            wait_for_js(page, f"({WHATIF_REPLICAS_JS})() !== null")
            replicas = page.evaluate(f"({WHATIF_REPLICAS_JS})()")
            assert max(replicas) > 2 and replicas[0] == 2 and replicas[-1] < max(replicas)
            page.click("#whatif-result details summary")
            assert "Decision: scale up from 2 to" in page.inner_text("[data-testid=whatif-changes-table]")
            page.screenshot(path=ARTIFACTS / "scaling-whatif.png", full_page=True)
            assert hook.posts == []  # a replay never acts

            page.click('[data-rule="load"] [data-testid=toggle-rule]')
            page.wait_for_selector("text=Rule “load” enabled.")
            page.click("[data-testid=enable]")
            page.wait_for_selector("text=Service checkout enabled.")
            assert ScaledService.objects.get(name="checkout").enabled
            assert ScalingRule.objects.get(name="load", service__name="checkout").enabled

            scaling_tick()  # 40 against 50 is 0.8x: ceil(2 x 0.8) = 2, so 2 stays
            page.goto(f"{live_server.url}/scaling/")
            page.wait_for_selector('[data-service="checkout"]')
            page.screenshot(path=ARTIFACTS / "scaling-index.png", full_page=True)
            page.goto(f"{live_server.url}/scaling/services/checkout/")
            page.wait_for_selector("[data-testid=decisions] tbody tr")
            page.screenshot(path=ARTIFACTS / "scaling-service.png", full_page=True)

            hook.status = 500  # a failing executor: visible on the page, in the log and as the last error
            page.fill("#scale #id_replicas", "5")
            page.click("#scale button[type=submit]")
            page.wait_for_selector("[data-testid=last-error]")
            assert "answered 500" in page.inner_text("[data-testid=last-error]")
            assert "answered 500" in page.inner_text("[data-testid=decisions] tbody tr:first-child")
            page.screenshot(path=ARTIFACTS / "scaling-service-failure.png", full_page=True)


EDITABLE = "main input:not([type=hidden]), main textarea, main select"


@pytest.mark.parametrize("width", [1280, 390])
def test_scaling_pages_as_viewer_and_operator_at_desktop_and_phone_width(
    live_server, operator_user, viewer_user, width
):
    (series,) = series_resolve(target_id=None, specs=[SeriesSpec("cpu_busy", {})])
    now = timezone.now()
    samples_write([(series, now - timedelta(minutes=30 - i), 98.0) for i in range(30)])
    service = service_create(
        data=ServiceInput(
            name="ux-web",
            executor_kind="webhook",
            executor_config={"url": "http://127.0.0.1:9/scale"},
            min_replicas=2,
            max_replicas=2,
        ),
        actor=operator_user,
        via="system",
    )
    ScalingRule.objects.create(service=service, name="cpu", source="series", series_id=series, target_value=50)
    ScaledService.objects.filter(pk=service.pk).update(applied_replicas=2, observed_replicas=1, observed_at=now)
    for user in (viewer_user, operator_user):
        role = user.username.split("-")[1]
        with browser_page(width=width, height=900) as page:
            page.goto(f"{live_server.url}/login/?next=/scaling/")
            page.fill("#id_username", user.username)
            page.fill("#id_password", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_selector('[data-service="ux-web"]')
            page.screenshot(path=ARTIFACTS / f"scaling-index-{role}-{width}.png", full_page=True)
            page.goto(f"{live_server.url}/scaling/services/ux-web/")
            explained = page.inner_text("[data-testid=replicas-explained]")
            assert "Set to 2 by Perfpilot, but 1 observed running" in explained
            page.select_option("[data-testid=whatif-form] select[name=range]", "1h")
            page.click("[data-testid=whatif-form] button")
            page.wait_for_selector("[data-testid=whatif-last-step]")
            assert "98 per replica" in page.inner_text("[data-testid=whatif-last-step]")
            page.click("#whatif-result details summary")
            assert "Clamp: above the maximum of 2" in page.inner_text("[data-testid=whatif-changes-table]")
            assert page.locator("[data-testid=whatif-changes-table] tbody tr").count() == 1  # one held stretch
            page.screenshot(path=ARTIFACTS / f"scaling-service-{role}-{width}.png", full_page=True)
            if user == viewer_user:  # a viewer reads: the only controls are the what-if query's
                controls = page.locator(EDITABLE)
                names = {controls.nth(i).get_attribute("name") for i in range(controls.count())}
                assert names == {"rule", "range"}
