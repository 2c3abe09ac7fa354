"""An operator sees a firing alert in the banner, acknowledges it and silences it; rule and channel pages."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from alerts.services.delivery import channel_test_send
from monitoring.storage import SeriesSpec, samples_write, series_resolve
from tests.alerts.conftest import make_alert, make_channel, make_rule
from tests.alerts.fake_slack import FakeSlack
from tests.conftest import PASSWORD
from tests.e2e.browser import ARTIFACTS, browser_page, wait_for_js

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _sign_in(page, base_url: str, username: str) -> None:
    page.goto(f"{base_url}/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base_url}/")


def test_ack_and_silence_a_firing_alert(live_server, operator_user):
    from monitoring.models import Target

    target = Target.objects.create(name="db1", kind="postgres")
    # Breaching samples: the beat of earlier browser tests may evaluate this rule meanwhile, and
    # with no data it would resolve the alert before the page shows it.
    (series_id,) = series_resolve(target_id=target.id, specs=[SeriesSpec("postgres_connections_used_percent", {})])
    now = timezone.now()
    samples_write([(series_id, now - timedelta(minutes=minutes), 97.0) for minutes in range(5)])
    rule = make_rule(runbook="Check pg_stat_activity.")
    alert = make_alert(rule, target=target, severity="critical", value=97.0, threshold=95.0)
    make_alert(make_rule(name="Disk nearly full", metric="host_disk_used_percent"), target=target, state="pending")
    with browser_page() as page:
        _sign_in(page, live_server.url, operator_user.username)
        banner = page.wait_for_selector("[data-testid=alert-banner]")
        assert "1 firing" in banner.inner_text()
        page.screenshot(path=ARTIFACTS / "alerts-banner.png")

        page.goto(f"{live_server.url}/alerts/")
        row = page.locator(f"#alert-{alert.id}")
        row.locator("input[name=comment]").fill("looking into it")
        page.screenshot(path=ARTIFACTS / "alerts-page.png", full_page=True)
        row.get_by_role("button", name="Ack", exact=True).click()
        page.wait_for_selector(f"#alert-{alert.id} >> text=acknowledged by oscar-operator")

        page.locator(f"#alert-{alert.id} >> text=Silence").click()
        assert page.input_value("#id_matchers") == "alertname=Connections high, target=db1"
        page.fill("#id_comment", "")
        page.click("text=Silence >> nth=-1")
        page.wait_for_selector(".field-error")
        page.fill("#id_comment", "failover drill")
        page.click("button[type=submit].primary")
        page.wait_for_url(f"{live_server.url}/alerts/")
        page.wait_for_selector(f"#alert-{alert.id} >> text=silenced")
        assert "failover drill" in page.locator("[data-testid=silences]").inner_text()
        page.screenshot(path=ARTIFACTS / "alerts-acked-silenced.png", full_page=True)

        page.goto(f"{live_server.url}/alerts/{alert.id}/")
        assert "Check pg_stat_activity." in page.content()
        page.screenshot(path=ARTIFACTS / "alerts-detail.png", full_page=True)


def test_rule_editor_and_channel_pages(live_server, operator_user):
    slack = FakeSlack().start()
    try:
        channel = make_channel(slack.url)
        channel_test_send(channel=channel, actor=operator_user, via="ui")
        rule = make_rule()
        with browser_page() as page:
            _sign_in(page, live_server.url, operator_user.username)
            page.goto(f"{live_server.url}/alerts/rules/{rule.id}/")
            page.wait_for_selector("[data-testid=rule-preview]")
            page.fill("#id_critical_threshold", "50")
            page.dispatch_event("#id_critical_threshold", "change")
            page.wait_for_selector("#preview .field-error >> text=must be at or above the warning one")
            page.screenshot(path=ARTIFACTS / "alerts-rule-editor.png", full_page=True)
            page.goto(f"{live_server.url}/alerts/channels/{channel.id}/")
            page.click("text=Send test")
            page.wait_for_selector(".message.success")
            assert page.locator("[data-testid=delivery-log] tbody tr").count() == 2
            assert slack.url not in page.content()
            page.screenshot(path=ARTIFACTS / "alerts-channel.png", full_page=True)
            page.goto(f"{live_server.url}/alerts/rules/")
            page.screenshot(path=ARTIFACTS / "alerts-rules.png", full_page=True)
            page.goto(f"{live_server.url}/alerts/channels/")
            page.screenshot(path=ARTIFACTS / "alerts-channels.png", full_page=True)
    finally:
        slack.stop()


def test_a_new_rule_starts_without_errors_and_suggests_metrics_at_phone_width(live_server, operator_user):
    from monitoring.models import Target

    target = Target.objects.create(name="cache", kind="redis")
    series_resolve(target_id=target.id, specs=[SeriesSpec("redis_used_memory_bytes", {}, unit="bytes")])
    with browser_page(width=390) as page:
        _sign_in(page, live_server.url, operator_user.username)
        page.goto(f"{live_server.url}/alerts/rules/new/")
        hint = page.wait_for_selector("[data-testid=preview-hint]")
        assert "Name a metric" in hint.inner_text()
        assert page.locator(".field-error").count() == 0 and "No series" not in page.content()
        options = page.eval_on_selector_all("#metric-names option", "options => options.map(o => o.value)")
        assert options == ["redis_used_memory_bytes"]
        page.type("#id_metric", "redis_used_memory_bytes")
        page.wait_for_selector("[data-testid=preview-note]")
        assert page.locator(".field-error").count() == 0
        page.screenshot(path=ARTIFACTS / "alerts-new-rule-390.png", full_page=True)


def test_the_banner_region_changes_only_when_what_it_says_changes(live_server, operator_user):
    from alerts.services.manage import alert_ack
    from monitoring.models import Target

    target = Target.objects.create(name="db1", kind="postgres")
    (series_id,) = series_resolve(target_id=target.id, specs=[SeriesSpec("postgres_connections_used_percent", {})])
    samples_write([(series_id, timezone.now() - timedelta(minutes=minutes), 97.0) for minutes in range(5)])
    alert = make_alert(make_rule(), target=target, severity="critical", value=97.0, threshold=95.0)
    with browser_page() as page:
        # The banner polls every 15 s: the page's clock is moved on instead of waiting for two polls.
        page.clock.install()
        _sign_in(page, live_server.url, operator_user.username)
        page.wait_for_selector("#alert-banner[role=status][aria-live=polite] [data-testid=alert-banner]")
        page.evaluate("""() => {
            window.bannerPolls = [];
            window.bannerMutations = 0;
            new MutationObserver(() => window.bannerMutations++).observe(
                document.getElementById("alert-banner"), {childList: true, subtree: true, characterData: true});
            document.body.addEventListener("htmx:afterRequest", (event) => {
                if (event.detail.elt.id === "alert-banner") window.bannerPolls.push(event.detail.xhr.status);
            });
        }""")
        page.clock.fast_forward("00:16")
        wait_for_js(page, "window.bannerPolls.length >= 1", timeout=20_000)
        assert page.evaluate("window.bannerPolls") == [204]
        assert page.evaluate("window.bannerMutations") == 0  # nothing re-rendered, nothing re-announced
        alert_ack(alert=alert, actor=operator_user, comment="on it", via="ui")
        page.clock.fast_forward("00:16")
        wait_for_js(page, "window.bannerPolls.length >= 2", timeout=20_000)
        assert page.evaluate("window.bannerPolls")[1] == 200
        page.wait_for_selector("[data-testid=alert-banner]", state="detached")
        assert page.evaluate("window.bannerMutations") > 0
