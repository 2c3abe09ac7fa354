"""Alerts pages: lists, the banner, forms with field errors, channels that never show their URL, roles."""

from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest
from django.utils import timezone

from alerts.models import Alert, AlertRule, Channel, Silence
from alerts.services.manage import SilenceInput, alert_ack, silence_create
from monitoring.models import Target
from monitoring.storage import SeriesSpec, series_resolve
from tests.alerts.conftest import make_alert, make_channel, make_rule, write_value

pytestmark = pytest.mark.django_db


def test_the_alerts_page_lists_firing_pending_and_resolved(viewer_client, target):
    rule = make_rule()
    make_alert(rule, target=target, state="firing", severity="critical")
    make_alert(rule, target=target, state="pending", extra_labels={"x": "1"})
    make_alert(rule, target=target, state="resolved", extra_labels={"x": "2"})
    html = viewer_client.get("/alerts/").content.decode()
    for state in ("firing", "pending", "resolved"):
        assert f'data-testid="alerts-{state}"' in html
    assert html.count("Connections high</a>") == 3
    assert "Ack</button>" not in html  # viewers read only
    fragment = viewer_client.get("/alerts/?fragment=lists", HTTP_HX_REQUEST="true").content.decode()
    assert fragment.lstrip().startswith('<div id="alert-lists"')


def _banner(client, *, shown: str | None = None):
    return client.get("/alerts/banner/", {"shown": shown} if shown else {}, HTTP_HX_REQUEST="true")


def _shown_version(html: str) -> str:
    return re.search(r'id="alert-banner-shown" name="shown" value="([0-9a-f]+)"', html).group(1)


def test_every_page_polls_the_banner_into_a_polite_live_region(viewer_client, target):
    page = viewer_client.get("/monitoring/").content.decode()
    region = re.search(r'<div id="alert-banner"[^>]*>', page).group(0)
    assert 'role="status"' in region and 'aria-live="polite"' in region and 'hx-get="/alerts/banner/"' in region
    assert 'role="alert"' not in page
    assert 'data-testid="alert-banner"' not in _banner(viewer_client).content.decode()
    make_alert(make_rule(), target=target, state="firing", severity="critical")
    banner = _banner(viewer_client).content.decode()
    assert "1 firing" in banner and "1 critical" in banner and "Connections high on db1" in banner


def test_the_banner_answers_204_while_the_page_shows_its_current_version(viewer_client, target):
    version = _shown_version(_banner(viewer_client).content.decode())
    unchanged = _banner(viewer_client, shown=version)
    assert unchanged.status_code == 204 and unchanged.content == b""
    make_alert(make_rule(), target=target, state="firing")
    changed = _banner(viewer_client, shown=version)
    assert changed.status_code == 200 and "1 firing" in changed.content.decode()
    assert _banner(viewer_client, shown=_shown_version(changed.content.decode())).status_code == 204


def test_the_banner_leaves_out_acknowledged_silenced_and_inhibited_alerts(viewer_client, operator_user, target):
    rule = make_rule()
    loud = make_alert(rule, target=target, state="firing", extra_labels={"db": "loud"})
    acked = make_alert(rule, target=target, state="firing", extra_labels={"db": "acked"})
    alert_ack(alert=acked, actor=operator_user, comment="on it", via="ui")
    make_alert(rule, target=target, state="firing", extra_labels={"db": "quiet"})
    silence_create(data=SilenceInput(matchers=[{"name": "db", "op": "=", "value": "quiet"}],
                                     ends_at=timezone.now() + timedelta(hours=1), comment="drill"),
                   actor=operator_user, via="ui")  # fmt: skip
    banner = _banner(viewer_client).content.decode()
    assert "1 firing" in banner and f"/alerts/{loud.id}/" in banner and f"/alerts/{acked.id}/" not in banner
    assert "also 1 acknowledged, 1 silenced or inhibited" in banner
    alert_ack(alert=loud, actor=operator_user, comment="", via="ui")
    assert 'data-testid="alert-banner"' not in _banner(viewer_client).content.decode()


def test_operators_ack_and_silence_from_the_page(operator_client, target):
    alert = make_alert(make_rule(), target=target)
    operator_client.post(f"/alerts/{alert.id}/ack/", {"comment": "checking"})
    alert.refresh_from_db()
    assert alert.ack_comment == "checking" and alert.acked_by.username == "oscar-operator"
    form = operator_client.get(f"/alerts/silences/new/?alert={alert.id}").content.decode()
    assert "alertname=Connections high, target=db1" in form
    response = operator_client.post(
        "/alerts/silences/new/", {"matchers": "alertname=Connections high, target=db1", "hours": "4", "comment": "x"}
    )
    assert response.status_code == 302
    assert Silence.objects.get().matchers[1] == {"name": "target", "op": "=", "value": "db1"}
    bad = operator_client.post("/alerts/silences/new/", {"matchers": "nonsense", "hours": "4", "comment": ""})
    assert bad.status_code == 422 and "is not name=value" in bad.content.decode()


def test_viewers_cannot_act(viewer_client, target):
    alert = make_alert(make_rule(), target=target)
    assert viewer_client.post(f"/alerts/{alert.id}/ack/", {"comment": "x"}).status_code == 403
    assert viewer_client.post("/alerts/rules/new/", {"name": "x"}).status_code == 403
    assert viewer_client.post("/alerts/channels/", {"name": "x"}).status_code == 403


def test_the_rule_editor_shows_field_errors_and_saves(operator_client):
    page = operator_client.get("/alerts/rules/new/")
    assert page.status_code == 200 and 'data-testid="rule-preview"' in page.content.decode()
    fields = {"name": "Disk", "kind": "threshold_above", "metric": "host_disk_used_percent", "severity": "critical",
              "warning_threshold": "90", "critical_threshold": "80", "window_seconds": "300", "for_seconds": "0",
              "keep_firing_for_seconds": "0", "eval_interval_seconds": "30", "enabled": "on"}  # fmt: skip
    bad = operator_client.post("/alerts/rules/new/", fields)
    assert bad.status_code == 422
    assert "The critical threshold must be at or above the warning one." in bad.content.decode()
    ok = operator_client.post("/alerts/rules/new/", {**fields, "critical_threshold": "95", "labels": "team=ops"})
    rule = AlertRule.objects.get(name="Disk")
    assert ok.status_code == 302 and rule.labels == {"team": "ops"}
    preview = operator_client.post("/alerts/rules/preview/", {**fields, "metric": "", "warning_threshold": "x"})
    assert "Warning threshold: Enter a number." in preview.content.decode()


def test_the_rule_editor_picks_its_target_by_name(operator_client):
    target = Target.objects.create(name="orders-db", kind="postgres")
    fields = {"name": "Orders down", "kind": "target_down", "severity": "critical", "window_seconds": "300",
              "for_seconds": "0", "keep_firing_for_seconds": "0", "eval_interval_seconds": "30"}  # fmt: skip
    unknown = operator_client.post("/alerts/rules/new/", {**fields, "target_id": "orders"})
    assert unknown.status_code == 422 and "No target named “orders”" in unknown.content.decode()
    assert operator_client.post("/alerts/rules/new/", {**fields, "target_id": "orders-db"}).status_code == 302
    rule = AlertRule.objects.get(name="Orders down")
    assert rule.target_id == target.id
    page = operator_client.get(f"/alerts/rules/{rule.id}/").content.decode()
    assert re.search(r'<input type="text" name="target_id" value="orders-db"[^>]*list="id_target_id-options"', page)


NEW_RULE_AS_POSTED_ON_LOAD = {"name": "", "kind": "threshold_above", "metric": "", "severity": "critical",
                              "window_seconds": "300", "for_seconds": "0", "keep_firing_for_seconds": "0",
                              "eval_interval_seconds": "30", "enabled": "on"}  # fmt: skip


def test_a_new_rule_says_nothing_is_required_before_anything_is_typed(operator_client):
    page = operator_client.get("/alerts/rules/new/").content.decode()
    assert "This field is required" not in page and "No series" not in page and 'data-testid="preview-hint"' in page
    preview = operator_client.post("/alerts/rules/preview/", NEW_RULE_AS_POSTED_ON_LOAD).content.decode()
    assert "required" not in preview and "No series" not in preview
    assert "Name a metric (the field suggests the collected ones)" in preview


def test_the_preview_shows_series_of_the_typed_metric_in_its_unit(clean_samples, operator_client, target):
    write_value(target, "redis_used_memory_bytes", 3 * 1024**3)
    typed = {**NEW_RULE_AS_POSTED_ON_LOAD, "metric": "redis_used_memory_bytes", "warning_threshold": str(2 * 1024**3)}
    preview = operator_client.post("/alerts/rules/preview/", typed).content.decode()
    assert "3 GiB" in preview and "sev-warning" in preview
    no_threshold = operator_client.post("/alerts/rules/preview/", {**typed, "warning_threshold": ""}).content.decode()
    assert "3 GiB" in no_threshold and "field-error" not in no_threshold
    assert "Set a warning or a critical threshold to see what the rule would say." in no_threshold
    unknown = operator_client.post("/alerts/rules/preview/", {**typed, "metric": "redis_used_memory"}).content.decode()
    assert "No series of this metric yet" in unknown


def test_the_metric_field_suggests_collected_metric_names(operator_client, target):
    specs = [SeriesSpec("redis_used_memory_bytes", {}), SeriesSpec("host_cpu_percent", {"cpu": "total"})]
    series_resolve(target_id=target.id, specs=specs)
    page = operator_client.get("/alerts/rules/new/").content.decode()
    assert 'list="metric-names"' in page
    datalist = re.search(r'<datalist id="metric-names">(.*?)</datalist>', page).group(1)
    assert datalist == '<option value="host_cpu_percent"><option value="redis_used_memory_bytes">'


def test_rules_list_thresholds_and_durations_in_human_units(viewer_client):
    make_rule(name="Redis memory", metric="redis_used_memory_bytes", warning_threshold=2147483648.0,
              critical_threshold=4 * 1024**3, for_seconds=300)  # fmt: skip
    make_rule(name="Disk full soon", kind="forecast", metric="host_disk_used_percent", forecast_limit=100,
              warning_threshold=7, critical_threshold=2)  # fmt: skip
    html = viewer_client.get("/alerts/rules/").content.decode()
    assert "2147483648" not in html
    assert '<td class="num">2 GiB</td>' in html and '<td class="num">4 GiB</td>' in html
    assert '<td class="num">5 min</td>' in html and '<td class="num">7 d</td>' in html
    assert '<td class="num">80 %</td>' not in html  # only the rules made here


def test_a_channel_url_shows_scheme_host_and_port_but_not_its_path(operator_client):
    channel = make_channel("http://alerts.internal:9093/hooks/secret-part")
    html = operator_client.get("/alerts/channels/").content.decode()
    assert "secret-part" not in html and "http://alerts.internal:9093/••••••" in html
    assert Channel.objects.get(pk=channel.pk).url_display == "http://alerts.internal:9093/••••••"


def test_a_successful_delivery_response_is_not_shown_as_an_error(operator_client, fake_slack, target):
    from alerts.services.delivery import channel_test_send

    channel = make_channel(fake_slack.url)
    channel_test_send(channel=channel, actor=None, via="system")
    html = operator_client.get(f"/alerts/channels/{channel.id}/").content.decode()
    assert '<span class="badge ok">Sent</span>' in html
    assert '<td class="response-cell"><code>200 OK</code>' in html and "error-cell" not in html


def test_the_alert_page_names_the_channels_it_notified_and_its_value_in_words(operator_client, fake_slack, target):
    from alerts.services.delivery import notification_deliver
    from tests.alerts.conftest import enqueue

    make_channel(fake_slack.url, name="ops-slack")
    rule = make_rule(name="Target down", kind="target_down", metric="", warning_threshold=None,
                     critical_threshold=None)  # fmt: skip
    alert = make_alert(rule, target=target, severity="critical", value=7.0, threshold=None)
    (notification,) = enqueue(alert)
    notification_deliver(notification_id=notification.id)
    html = operator_client.get(f"/alerts/{alert.id}/").content.decode()
    assert re.search(r'notified <a href="/alerts/channels/\d+/">ops-slack</a></p>', html)
    assert (
        'data-testid="notifications"' in html
        and '<span class="badge ok">Sent</span> <span class="muted small">just now' in html
    )
    assert "7 collections failed in a row" in html and "value 7/8" not in html and "0 minutes" not in html


def test_the_channel_page_never_shows_the_url_and_shows_why_it_is_disabled(operator_client):
    channel = make_channel("https://hooks.slack.com/services/T1/B2/secret-part")
    Channel.objects.filter(pk=channel.pk).update(disabled_reason="HTTP 404 no_service: the webhook is gone")
    html = operator_client.get(f"/alerts/channels/{channel.id}/").content.decode()
    assert "secret-part" not in html and "https://hooks.slack.com/••••••" in html
    assert "HTTP 404 no_service" in html and "Send test</button>" in html
    fields = {"name": "x", "kind": "slack", "url": "nope", "severities": ["warning"], "group_wait_seconds": "0",
              "group_interval_seconds": "300", "repeat_interval_seconds": "14400"}  # fmt: skip
    bad = operator_client.post("/alerts/channels/", fields)
    assert bad.status_code == 422 and "http:// or https://" in bad.content.decode()


# A control a person can type into or pick from; hidden inputs (the banner's version) are no such thing.
VISIBLE_CONTROL = re.compile(r'<(?:input(?![^>]*type="hidden")|select|textarea)\b')


def _main(client, path: str) -> str:
    response = client.get(path)
    assert response.status_code == 200, path
    html = response.content.decode()
    return html[html.index("<main") : html.index("</main>")]


def _alerts_pages(target) -> dict[str, str]:
    rule = make_rule()
    alert = make_alert(rule, target=target, state="firing")
    channel = make_channel("http://127.0.0.1:9/slack", name="ops")
    return {
        "alerts": "/alerts/",
        "alert": f"/alerts/{alert.id}/",
        "rules": "/alerts/rules/",
        "rule": f"/alerts/rules/{rule.id}/",
        "channels": "/alerts/channels/",
        "channel": f"/alerts/channels/{channel.id}/",
    }


def test_a_viewer_sees_no_input_it_could_not_submit_on_any_alerts_page(viewer_client, target):
    for name, path in _alerts_pages(target).items():
        main = _main(viewer_client, path)
        assert not VISIBLE_CONTROL.search(main), f"{name} shows a form control to a viewer"
        assert 'type="submit"' not in main, f"{name} shows a button to a viewer"


def test_a_viewer_meets_the_403_page_on_new_rule_and_new_silence(viewer_client):
    for path in ("/alerts/rules/new/", "/alerts/silences/new/"):
        response = viewer_client.get(path)
        assert response.status_code == 403
        assert "Your role may not do this" in response.content.decode()


def test_operators_keep_their_forms_on_the_alerts_pages(operator_client, target):
    pages = _alerts_pages(target)
    assert 'name="comment"' in _main(operator_client, pages["alerts"])
    assert 'id="ack-comment"' in _main(operator_client, pages["alert"])
    rule_page = _main(operator_client, pages["rule"])
    assert '<select name="kind"' in rule_page and "Save rule</button>" in rule_page
    assert 'data-testid="rule-definition"' not in rule_page
    assert 'name="group_wait_seconds"' in _main(operator_client, pages["channels"])
    assert 'name="group_wait_seconds"' in _main(operator_client, pages["channel"])
    for path in ("/alerts/rules/new/", "/alerts/silences/new/"):
        assert VISIBLE_CONTROL.search(_main(operator_client, path)), path


def test_a_viewer_reads_a_rules_definition_in_human_units(viewer_client, target):
    rule = make_rule(name="Redis memory", metric="redis_used_memory_bytes", target_id=target.id,
                     warning_threshold=2147483648.0, critical_threshold=None, for_seconds=300,
                     labels={"team": "cache"}, summary="Redis is near its memory limit")  # fmt: skip
    main = _main(viewer_client, f"/alerts/rules/{rule.id}/")
    definition = re.search(r'<dl class="definition".*?</dl>', main, re.S).group(0)
    for term, description in [("Kind", "Threshold: above"), ("Warning", "2 GiB"), ("Critical", "—"),
                              ("Pending for", "5 min"), ("Window", "1 h"), ("Labels", "<code>team=cache</code>"),
                              ("Summary", "Redis is near its memory limit")]:  # fmt: skip
        assert re.search(rf"<dt>{term}</dt><dd>(<a [^>]*>)?{re.escape(description)}", definition), term
    assert f">{target.name}</a>" in definition
    assert "Editing rules needs the operator role." in main


def test_the_rule_form_shows_whole_thresholds_without_a_trailing_zero(operator_client):
    rule = make_rule(warning_threshold=80.0, critical_threshold=95.5)
    form = _main(operator_client, f"/alerts/rules/{rule.id}/")
    assert 'name="warning_threshold" value="80"' in form
    assert 'name="critical_threshold" value="95.5"' in form
    assert "80.0" not in form


def _status_cell(html: str, alert_id: int) -> str:
    row = re.search(rf'<tr id="alert-{alert_id}".*?</tr>', html, re.S).group(0)
    cell = re.search(r'<td class="alert-status"[^>]*>(.*?)</td>', row, re.S).group(1)
    return " ".join(re.sub(r"<[^>]+>|\{#.*?#\}", " ", cell).split())


def test_the_status_of_an_alert_says_firing_acknowledged_silenced_or_inhibited(viewer_client, operator_user, target):
    rule = make_rule()
    loud = make_alert(rule, target=target, state="firing", extra_labels={"db": "loud"})
    acked = make_alert(rule, target=target, state="firing", extra_labels={"db": "acked"})
    alert_ack(alert=acked, actor=operator_user, comment="on it", via="ui")
    quiet = make_alert(rule, target=target, state="firing", extra_labels={"db": "quiet"})
    ends_at = timezone.now() + timedelta(hours=2)
    silence_create(data=SilenceInput(matchers=[{"name": "db", "op": "=", "value": "quiet"}], ends_at=ends_at,
                                     comment="drill"), actor=operator_user, via="ui")  # fmt: skip
    pending = make_alert(rule, target=target, state="pending", extra_labels={"db": "slow"})
    html = viewer_client.get("/alerts/").content.decode()
    assert _status_cell(html, loud.id) == "firing not acknowledged"
    assert _status_cell(html, acked.id) == "firing acknowledged by oscar-operator just now: on it"
    assert _status_cell(html, quiet.id) == f"firing silenced until {ends_at:%Y-%m-%d %H:%M} UTC"
    assert _status_cell(html, pending.id) == "pending"
    rule_page = viewer_client.get(f"/alerts/rules/{rule.id}/").content.decode()
    assert _status_cell(rule_page, loud.id) == "firing not acknowledged"


def test_a_warning_muted_by_a_critical_alert_says_by_which(viewer_client, target):
    rule = make_rule()
    critical = make_alert(rule, target=target, state="firing", severity="critical")
    warning_rule = make_rule(name="Connections rising", warning_threshold=60.0)
    warning = make_alert(warning_rule, target=target, state="firing", severity="warning")
    assert _status_cell(viewer_client.get("/alerts/").content.decode(), warning.id) == (
        f"firing inhibited by {critical.title}"
    )


MAIL_ELEMENT = html.escape('jobs_queued{queue="mail", target="db1"}')


def test_the_rule_editor_saves_a_promql_rule_and_previews_its_elements(clean_samples, operator_client, target):
    from monitoring.models import PromQLSource

    source = PromQLSource.objects.create(name="thanos", url="http://127.0.0.1:9")
    write_value(target, "jobs_queued", 50.0, labels={"queue": "mail"})
    page = operator_client.get("/alerts/rules/new/").content.decode()
    assert 'name="expression"' in page and f'<option value="{source.id}">thanos</option>' in page
    typed = {**NEW_RULE_AS_POSTED_ON_LOAD, "kind": "promql"}
    assert "Write a PromQL expression" in operator_client.post("/alerts/rules/preview/", typed).content.decode()
    preview = operator_client.post("/alerts/rules/preview/", {**typed, "expression": "jobs_queued > 10"})
    assert MAIL_ELEMENT in preview.content.decode() and "sev-critical" in preview.content.decode()
    bad = operator_client.post("/alerts/rules/preview/", {**typed, "expression": "jobs_queued[5m]"}).content.decode()
    assert "field-error" in bad and "not a range vector" in bad
    down = operator_client.post("/alerts/rules/preview/", {**typed, "expression": "up", "promql_source_id": source.id})
    assert "thanos:" in down.content.decode() and "field-error" in down.content.decode()

    refused = operator_client.post("/alerts/rules/new/", {**typed, "name": "Queue", "expression": "rate(x)"})
    assert refused.status_code == 422 and "expected type matrix in call to function" in refused.content.decode()
    saved = operator_client.post("/alerts/rules/new/", {**typed, "name": "Queue", "expression": "jobs_queued > 10"})
    assert saved.status_code == 302
    rule = AlertRule.objects.get(name="Queue")
    assert (rule.kind, rule.expression, rule.promql_source_id) == ("promql", "jobs_queued > 10", None)
    page = operator_client.get(f"/alerts/rules/{rule.id}/").content.decode()
    assert MAIL_ELEMENT in page  # the saved rule's preview


def test_a_promql_alert_reads_on_the_alert_pages_with_its_element_labels(clean_samples, viewer_client, target):
    from alerts.services.evaluation import rule_evaluate

    write_value(target, "jobs_queued", 1234.5, labels={"queue": "mail"})
    rule = make_rule(name="Queue long", kind="promql", metric="", expression="jobs_queued > 10",
                     warning_threshold=None, critical_threshold=None)  # fmt: skip
    rule_evaluate(rule=rule)
    alert = Alert.objects.get(rule=rule)
    index = viewer_client.get("/alerts/").content.decode()
    assert "Queue long" in index and "queue=mail" in index
    page = viewer_client.get(f"/alerts/{alert.id}/")
    assert page.status_code == 200 and ">1,234<" in page.content.decode()  # the value, as numbers read
    definition = viewer_client.get(f"/alerts/rules/{rule.id}/").content.decode()
    assert 'data-testid="rule-expression">jobs_queued &gt; 10<' in definition and "Perfpilot's store" in definition
