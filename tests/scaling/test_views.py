"""Scaling pages: the list with current/desired and why, the service page, the rule editor's field errors."""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import timedelta
from html import unescape
from html.parser import HTMLParser

import pytest
from django.utils import timezone

from monitoring.storage import samples_write
from scaling.models import ScaledService, ScalingDecision, ScalingRule
from scaling.services.evaluation import service_evaluate
from tests.scaling.conftest import load_series, webhook_service

pytestmark = pytest.mark.usefixtures("clean_samples")


def _figure(html: str, testid: str) -> dict:
    match = re.search(rf'data-testid="{testid}" data-figure="([^"]*)"', html)
    assert match, f"no {testid} figure"
    return json.loads(unescape(match.group(1)))


def test_index_lists_services_with_current_desired_and_why(viewer_client, hook):
    service = webhook_service("web", hook.url, series_id=load_series("app_load", 100))
    service_evaluate(service=service)
    html = viewer_client.get("/scaling/").content.decode()
    assert 'data-service="web"' in html
    row = html[html.index('data-service="web"') :]
    assert '<td class="num" data-testid="current">2' in row
    assert '<td class="num" data-testid="desired">2</td>' in row
    assert "Decision: scale up from 1 to 2." in row
    assert "<code>scale</code>" in html  # the section's queue
    assert "Add a service" not in html  # viewers do not get the form


def test_add_service_form_shows_field_errors(operator_client):
    response = operator_client.post(
        "/scaling/",
        {
            "name": "api",
            "tier": "critical",
            "executor_kind": "webhook",
            "executor_config": "{not json",
            "min_replicas": 3,
            "max_replicas": 2,
        },
    )
    assert response.status_code == 422
    form = response.context["form"]
    assert "Not valid JSON" in form.errors["executor_config"][0]
    assert "cannot be below" in form.errors["max_replicas"][0]
    missing = operator_client.post(
        "/scaling/",
        {
            "name": "api",
            "tier": "critical",
            "executor_kind": "webhook",
            "executor_config": "{}",
            "min_replicas": 1,
            "max_replicas": 2,
        },
    )
    assert missing.status_code == 422
    assert "needs url" in missing.context["form"].errors["executor_config"][0]
    created = operator_client.post(
        "/scaling/",
        {
            "name": "api",
            "tier": "critical",
            "executor_kind": "webhook",
            "executor_config": '{"url": "https://ops.example/hook?key=s3cret"}',
            "min_replicas": 1,
            "max_replicas": 4,
        },
    )
    assert created.status_code == 302 and created["Location"] == "/scaling/services/api/"
    page = operator_client.get("/scaling/services/api/").content.decode()
    assert "s3cret" not in page and "secrets set: url (hidden)" in page


def test_service_page_draws_replicas_as_a_step_line_over_the_driving_metric(viewer_client, hook):
    service = webhook_service("web", hook.url, series_id=load_series("app_load", 100))
    service_evaluate(service=service)
    html = viewer_client.get("/scaling/services/web/").content.decode()
    figure = _figure(html, "replicas-chart")
    replicas = next(t for t in figure["data"] if t["name"] == "replicas")
    metric = next(t for t in figure["data"] if t["name"] == "load")
    assert replicas["line"]["shape"] == "hv" and replicas["y"] == [2, 2]  # the last count holds until now
    assert metric["y"] == [100.0] and metric["yaxis"] == "y2"
    assert "Decision log" in html and "Scale by hand" not in html  # viewer


def test_rule_editor_shows_field_errors_and_saves(operator_client, hook):
    webhook_service("web", hook.url, series_id=load_series("app_load", 100))
    no_series = operator_client.post(
        "/scaling/services/web/rules/",
        {"name": "cpu-rule", "source": "series", "target_value": "50", "target_type": "value", "tolerance": "0.1"},
    )
    assert no_series.status_code == 422
    assert "Choose the series" in no_series.context["new_rule_form"].errors["series_id"][0]
    unknown = operator_client.post(
        "/scaling/services/web/rules/",
        {
            "name": "cpu-rule",
            "source": "series",
            "series_id": "99999",
            "target_value": "50",
            "target_type": "value",
            "tolerance": "0.1",
        },
    )
    assert unknown.status_code == 422
    assert "No series with id 99999" in unknown.context["new_rule_form"].errors["series_id"][0]
    negative = operator_client.post(
        "/scaling/services/web/rules/",
        {"name": "cpu-rule", "source": "cpu", "target_value": "-1", "target_type": "value", "tolerance": "0.1"},
    )
    assert "above 0" in negative.context["new_rule_form"].errors["target_value"][0]
    saved = operator_client.post(
        "/scaling/services/web/rules/",
        {
            "name": "cpu-rule",
            "source": "cpu",
            "target_value": "70",
            "target_type": "value",
            "tolerance": "0.2",
            "enabled": "on",
        },
    )
    assert saved.status_code == 302
    assert ScalingRule.objects.get(name="cpu-rule").tolerance == 0.2


def test_evaluate_now_and_manual_scale_from_the_page(operator_client, hook):
    webhook_service("web", hook.url, series_id=load_series("app_load", 100), max_replicas=5)
    assert operator_client.post("/scaling/services/web/evaluate/").status_code == 302
    assert ScalingDecision.objects.get().trigger == ScalingDecision.Trigger.MANUAL
    too_many = operator_client.post("/scaling/services/web/scale/", {"replicas": "9"})
    assert too_many.status_code == 422
    assert "between the service's min (1) and max (5)" in too_many.context["scale_form"].errors["replicas"][0]
    assert operator_client.post("/scaling/services/web/scale/", {"replicas": "4"}).status_code == 302
    assert hook.posts[-1]["json"]["replicas"] == 4
    assert operator_client.post("/scaling/services/web/state/", {"action": "pause"}).status_code == 302
    assert ScaledService.objects.get(name="web").paused


def test_viewers_cannot_act(viewer_client, hook):
    webhook_service("web", hook.url, series_id=load_series("app_load", 100))
    assert viewer_client.post("/scaling/services/web/evaluate/").status_code == 403
    assert viewer_client.post("/scaling/services/web/scale/", {"replicas": "2"}).status_code == 403
    assert viewer_client.post("/scaling/", {"name": "x"}).status_code == 403
    assert hook.posts == []


def test_whatif_fragment_shows_the_replay_chart(viewer_client, hook):
    webhook_service("web", hook.url, series_id=load_series("app_load", 100))
    response = viewer_client.get("/scaling/services/web/whatif/?rule=load&range=1h", HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    html = response.content.decode()
    figure = json.loads(unescape(re.search(r'data-figure="([^"]*)"', html).group(1)))
    replicas = next(t for t in figure["data"] if t["name"] == "replicas (what-if)")
    assert replicas["line"]["shape"] == "hv" and replicas["y"] == [2]
    assert 'data-testid="whatif-changes">1<' in html
    assert "1 → 2" in html and "Decision: scale up from 1 to 2." in html


def _cpu_series(value: float) -> int:
    """A CPU series: a built-in metric the catalogue knows in percent."""
    return load_series("host_cpu_percent", value, labels={"cpu": "total"})


def test_the_charts_show_the_rules_metric_in_its_unit(viewer_client, hook):
    service = webhook_service("web", hook.url, series_id=_cpu_series(98))
    service_evaluate(service=service)
    figure = _figure(viewer_client.get("/scaling/services/web/").content.decode(), "replicas-chart")
    assert figure["layout"]["yaxis2"]["ticksuffix"] == "%"
    assert next(t for t in figure["data"] if t["name"] == "load")["hovertemplate"].startswith("%{y:.1f}%")
    html = viewer_client.get("/scaling/services/web/whatif/?rule=load&range=1h", HTTP_HX_REQUEST="true").content
    whatif = json.loads(unescape(re.search(r'data-figure="([^"]*)"', html.decode()).group(1)))
    assert whatif["layout"]["yaxis2"]["ticksuffix"] == "%"


def test_the_whatif_chart_draws_the_simulated_metric_the_rule_reasoned_on(viewer_client, hook):
    # 98 % recorded at 1 replica: the rule asks for 2, and at 2 the same load is 49 % per replica.
    series_id = _cpu_series(98)
    samples_write([(series_id, timezone.now() - timedelta(minutes=2), 98.0)])
    webhook_service("web", hook.url, series_id=series_id)
    html = viewer_client.get("/scaling/services/web/whatif/?rule=load&range=1h", HTTP_HX_REQUEST="true").content
    figure = json.loads(unescape(re.search(r'data-figure="([^"]*)"', html.decode()).group(1)))
    by_name = {t["name"]: t for t in figure["data"]}
    assert by_name["load recorded"]["y"] == [98.0, 98.0]
    assert by_name["load simulated per replica"]["y"] == [98.0, 49.0]
    assert by_name["replicas (what-if)"]["y"] == [2, 2]


def test_before_any_decision_the_chart_holds_the_applied_count_or_says_no_decision_yet(viewer_client, hook):
    service = webhook_service("web", hook.url, series_id=_cpu_series(40))
    figure = _figure(viewer_client.get("/scaling/services/web/").content.decode(), "replicas-chart")
    assert [a["text"] for a in figure["layout"]["annotations"]] == ["No scaling decision recorded yet"]
    ScaledService.objects.filter(pk=service.pk).update(observed_replicas=3)
    figure = _figure(viewer_client.get("/scaling/services/web/").content.decode(), "replicas-chart")
    level = next(t for t in figure["data"] if t["name"] == "replicas now (no scaling decision recorded yet)")
    assert level["y"] == [3, 3]


def test_the_chart_shows_replicas_in_effect_and_what_a_dry_run_would_set(viewer_client, hook):
    service = webhook_service("dry", hook.url, series_id=load_series("app_load", 100), dry_run=True)
    service_evaluate(service=service)
    figure = _figure(viewer_client.get("/scaling/services/dry/").content.decode(), "replicas-chart")
    running = next(t for t in figure["data"] if t["name"] == "replicas")
    would = next(t for t in figure["data"] if t["name"] == "dry run: would set")
    assert running["y"] == [1, 1] and would["y"] == [2]
    assert would["line"]["shape"] == "hv"


def test_editing_a_rule_keeps_its_name_and_shows_errors_on_its_own_form(operator_client, hook):
    service = webhook_service("web", hook.url, series_id=load_series("app_load", 100))
    rule = service.rules.get(name="load")
    prefix = f"rule-{rule.id}"
    bad = operator_client.post(
        "/scaling/services/web/rules/",
        {
            "rule_id": rule.id,
            f"{prefix}-name": "renamed",
            f"{prefix}-source": "series",
            f"{prefix}-series_id": "",
            f"{prefix}-target_value": "40",
            f"{prefix}-target_type": "value",
            f"{prefix}-tolerance": "0.1",
        },
    )
    assert bad.status_code == 422
    (edited_rule, form) = bad.context["rule_forms"][0]
    assert edited_rule == rule and "Choose the series" in form.errors["series_id"][0]
    good = operator_client.post(
        "/scaling/services/web/rules/",
        {
            "rule_id": rule.id,
            f"{prefix}-name": "renamed",
            f"{prefix}-source": "series",
            f"{prefix}-series_id": rule.series_id,
            f"{prefix}-target_value": "40",
            f"{prefix}-target_type": "value",
            f"{prefix}-tolerance": "0.1",
            f"{prefix}-enabled": "on",
        },
    )
    assert good.status_code == 302
    assert list(ScalingRule.objects.values_list("name", "target_value")) == [("load", 40.0)]


def test_the_rules_table_says_what_each_rule_reads(operator_client, hook):
    from monitoring.storage import SeriesSpec, series_resolve

    service = webhook_service("web", hook.url, series_id=load_series("app_load", 100))
    series_resolve(target_id=None, specs=[SeriesSpec("celery_queue_length", {"queue": "default"})])
    operator_client.post(
        "/scaling/services/web/rules/",
        {
            "name": "backlog",
            "source": "queue_length",
            "labels": '{"queue": "default"}',
            "target_value": "10",
            "target_type": "average",
            "tolerance": "0.1",
            "enabled": "on",
        },
    )
    assert service.rules.count() == 2
    html = operator_client.get("/scaling/services/web/").content.decode()
    assert "<code>sum of celery_queue_length{queue=default}</code>" in html
    assert html.count('data-testid="matched">1 series<') == 2


class _IdCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.ids.extend(value for name, value in attrs if name == "id" and value)


def _repeated_ids(html: str) -> list[str]:
    parser = _IdCollector()
    parser.feed(html)
    return sorted(name for name, count in Counter(parser.ids).items() if count > 1)


def test_every_element_id_on_the_scaling_pages_is_unique(operator_client, viewer_client, hook):
    service = webhook_service("web", hook.url, series_id=load_series("app_load", 100))
    service_evaluate(service=service)
    for client in (operator_client, viewer_client):
        for url in ("/scaling/", "/scaling/services/web/", "/scaling/services/web/whatif/?rule=load&range=1h"):
            response = client.get(url)
            assert response.status_code == 200
            assert _repeated_ids(response.content.decode()) == [], url


def test_the_rule_form_picks_targets_and_series_by_name(operator_client, hook):
    series_id = load_series("app_load", 100, labels={"pool": "web"})
    webhook_service("web", hook.url, series_id=series_id)
    html = operator_client.get("/scaling/services/web/").content.decode()
    assert f'<option value="{series_id}">no target · app_load{{pool=web}}</option>' in html
    assert 'id="id_new_rule_target_id"' in html
    assert 'list="id_new_rule_target_id-options"' in html  # a name search, not a select of every target
    assert '<datalist id="rule-metric-names">' in html and '<option value="app_load">' in html
    rules_table = html[html.index('data-testid="rules"') :]
    assert "<code>no target · app_load{pool=web}</code>" in rules_table  # not "series #12"


def test_whatif_shows_the_simulated_metric_and_why_it_held(viewer_client, hook):
    # CPU at 98 against a target of 50 on 2 replicas wants 4, but the service allows at most 2.
    series_id = load_series("cpu", 98)
    samples_write([(series_id, timezone.now() - timedelta(minutes=m), 98.0) for m in (3, 2)])
    webhook_service("web", hook.url, series_id=series_id, min_replicas=2, max_replicas=2)
    html = viewer_client.get("/scaling/services/web/whatif/?rule=load&range=1h", HTTP_HX_REQUEST="true")
    html = html.content.decode()
    assert 'data-testid="whatif-changes">0<' in html
    assert 'data-testid="whatif-last-simulated">98 per replica<' in html
    assert "the rule asked for 4, held at 2" in html
    held = html[html.index('data-testid="whatif-changes-table"') :]
    assert "2 → 2" in held and ">held<" in held and "Clamp: above the maximum of 2, so 2." in held
    assert held.count("<tr>") == 2 and "(3 points, the last shown)" in held  # header + one stretch, not a row a point


def test_replicas_set_by_perfpilot_and_observed_running_are_told_apart(viewer_client, hook):
    service = webhook_service("web", hook.url, series_id=load_series("app_load", 50))
    ScaledService.objects.filter(pk=service.pk).update(
        applied_replicas=2, observed_replicas=1, observed_at=timezone.now()
    )
    page = viewer_client.get("/scaling/services/web/").content.decode()
    explained = page[page.index('data-testid="replicas-explained"') :]
    assert "Set to 2 by Perfpilot, but 1 observed running" in explained
    assert "the executor has not caught up yet, or something else changed the count" in explained
    index = viewer_client.get("/scaling/").content.decode()
    assert "(1 running)" in index[index.index('data-service="web"') :]


def test_state_changes_are_confirmed_in_plain_words(operator_client, hook):
    webhook_service("web", hook.url, series_id=load_series("app_load", 50), enabled=False)
    response = operator_client.post("/scaling/services/web/state/", {"action": "enable"}, follow=True)
    assert "Service web enabled." in response.content.decode()
    response = operator_client.post("/scaling/services/web/state/", {"action": "dry-run-on"}, follow=True)
    assert "Service web switched to dry run." in response.content.decode()
