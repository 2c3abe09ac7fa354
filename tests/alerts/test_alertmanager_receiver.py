"""Alertmanager API v2 receiver: Prometheus's alerts become external alerts that Perfpilot routes,
groups, silences, inhibits and delivers; a real Prometheus 2.42 sends one through to the fake Slack."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from alerts.models import Alert, AlertRule, Notification, NotificationItem, Silence
from alerts.services.evaluation import rule_evaluate
from alerts.services.outbox import inhibited_by
from core.roles import OPERATOR
from core.services import api_token_create
from tests.alerts.conftest import make_channel
from tests.conftest import _make_user, prometheus_start

PATH = "/alertmanager/api/v2/alerts"
GENERATOR = "http://prometheus.example:9090/graph?g0.expr=up+%3D%3D+0&g0.tab=1"


def _rfc3339(seconds_from_now: float) -> str:
    moment = datetime.now(UTC) + timedelta(seconds=seconds_from_now)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}123Z"  # nanoseconds, as Go writes


def _alert(*, ends_in: float = 240, **labels) -> dict:
    """A postableAlert as Prometheus 2.42 sends it while the alert fires (endsAt a few minutes ahead)."""
    return {
        "labels": {"alertname": "InstanceDown", "instance": "web-1:9100", "job": "node", **labels},
        "annotations": {
            "summary": "web-1 is down",
            "description": "web-1:9100 has not answered for 5 minutes.",
            "runbook_url": "https://runbooks.example/instance-down",
        },
        "startsAt": _rfc3339(-60),
        "endsAt": _rfc3339(ends_in),
        "generatorURL": GENERATOR,
    }


def _post(client, auth, alerts, *, content_type="application/json"):
    body = alerts if isinstance(alerts, bytes) else json.dumps(alerts)
    return client.post(PATH, body, content_type=content_type, **auth)


def _items(alert: Alert) -> list[tuple[str, str]]:
    return list(
        NotificationItem.objects.filter(alert=alert).order_by("id").values_list("notification__channel__name", "state")
    )


def test_a_firing_alert_becomes_an_external_alert_routed_to_the_channels(anonymous_client, operator_auth, fake_slack):
    make_channel(fake_slack.url)
    response = _post(anonymous_client, operator_auth, [_alert(severity="critical")])
    assert response.status_code == 200, response.content
    alert = Alert.objects.get()
    assert (alert.source, alert.state, alert.severity) == ("external", "firing", "critical")
    assert alert.labels == {
        "alertname": "InstanceDown",
        "instance": "web-1:9100",
        "job": "node",
        "severity": "critical",
    }
    assert alert.title == "web-1 is down"
    assert alert.message == "web-1:9100 has not answered for 5 minutes."
    assert alert.generator_url == GENERATOR
    assert alert.runbook_url == "https://runbooks.example/instance-down"
    assert alert.starts_at < timezone.now() < alert.ends_at
    rule = alert.rule
    assert (rule.kind, rule.name, rule.metric) == (AlertRule.Kind.EXTERNAL, "InstanceDown", "InstanceDown")
    assert _items(alert) == [("ops", "firing")]


def test_resends_keep_one_alert_and_an_ends_at_in_the_past_resolves_it(anonymous_client, operator_auth, fake_slack):
    make_channel(fake_slack.url)
    for _ in range(3):  # Prometheus resends every evaluation while it fires
        assert _post(anonymous_client, operator_auth, [_alert()]).status_code == 200
    alert = Alert.objects.get()
    assert list(alert.changes.values_list("to_state", flat=True)) == ["firing"]
    later = {**_alert(ends_in=600), "annotations": {"summary": "web-1 is still down"}}
    assert _post(anonymous_client, operator_auth, [later]).status_code == 200
    alert.refresh_from_db()
    assert alert.title == "web-1 is still down"
    assert alert.ends_at > timezone.now() + timedelta(seconds=500)
    assert list(alert.changes.values_list("to_state", flat=True)) == ["firing"]
    assert _post(anonymous_client, operator_auth, [_alert(ends_in=-1)]).status_code == 200
    alert.refresh_from_db()
    assert alert.state == "resolved"
    assert _items(alert) == [("ops", "firing"), ("ops", "resolved")]


def test_an_alert_not_resent_resolves_once_its_ends_at_passes(anonymous_client, operator_auth):
    assert _post(anonymous_client, operator_auth, [_alert(ends_in=30)]).status_code == 200
    alert = Alert.objects.get()
    assert rule_evaluate(rule=alert.rule, now=timezone.now() + timedelta(seconds=10)) == 0
    assert rule_evaluate(rule=alert.rule, now=timezone.now() + timedelta(seconds=31)) == 1
    alert.refresh_from_db()
    assert alert.state == "resolved"


def test_a_resolved_alert_never_seen_firing_is_not_stored(anonymous_client, operator_auth):
    assert _post(anonymous_client, operator_auth, [_alert(ends_in=-5)]).status_code == 200
    assert not Alert.objects.exists()


def test_severity_comes_from_the_severity_label_else_warning(anonymous_client, operator_auth):
    alerts = [_alert(instance="a", severity="info"), _alert(instance="b", severity="page"), _alert(instance="c")]
    assert _post(anonymous_client, operator_auth, alerts).status_code == 200
    severities = {a.labels["instance"]: a.severity for a in Alert.objects.all()}
    assert severities == {"a": "info", "b": "warning", "c": "warning"}


def test_a_silence_matching_its_labels_mutes_it(anonymous_client, operator_auth, fake_slack):
    make_channel(fake_slack.url)
    now = timezone.now()
    Silence.objects.create(
        matchers=[{"name": "job", "op": "=", "value": "node"}, {"name": "instance", "op": "=~", "value": "web-.*"}],
        starts_at=now - timedelta(minutes=1), ends_at=now + timedelta(hours=1), comment="maintenance",
    )  # fmt: skip
    assert _post(anonymous_client, operator_auth, [_alert(), _alert(job="db")]).status_code == 200
    muted, sent = Alert.objects.get(labels__job="node"), Alert.objects.get(labels__job="db")
    assert muted.state == sent.state == "firing"  # states stay visible
    assert _items(muted) == []
    assert _items(sent) == [("ops", "firing")]


def test_alerts_of_one_group_share_a_message(anonymous_client, operator_auth, fake_slack):
    make_channel(fake_slack.url, group_by=["alertname"], group_wait_seconds=30)
    alerts = [_alert(instance="web-1:9100"), _alert(instance="web-2:9100")]
    assert _post(anonymous_client, operator_auth, alerts).status_code == 200
    (notification,) = Notification.objects.all()
    assert notification.group_key == "alertname=InstanceDown|firing"
    assert notification.items.count() == 2


def test_a_critical_alert_inhibits_the_warning_with_the_same_other_labels(anonymous_client, operator_auth):
    alerts = [_alert(severity="warning"), _alert(severity="critical"), _alert(severity="warning", instance="web-2")]
    assert _post(anonymous_client, operator_auth, alerts).status_code == 200
    critical = Alert.objects.get(labels__severity="critical")
    assert inhibited_by(alert=Alert.objects.get(labels__severity="warning", labels__instance="web-1:9100")) == critical
    assert inhibited_by(alert=Alert.objects.get(labels__instance="web-2")) is None


@pytest.mark.parametrize(
    ("mutate", "field", "reason"),
    [
        (lambda a: {"alerts": [a]}, "body", "must be a JSON list"),
        (lambda a: [{k: v for k, v in a.items() if k != "labels"}], "[1].labels", "is required"),
        (lambda a: [{**a, "labels": {}}], "[1].labels", "at least one label pair"),
        (lambda a: [{**a, "labels": {"job": "x"}}], "[1].labels.alertname", "alertname is required"),
        (lambda a: [{**a, "labels": {**a["labels"], "bad-name": "x"}}], "[1].labels", "invalid label name"),
        (lambda a: [{**a, "labels": {**a["labels"], "n": 5}}], "[1].labels", "must be a string"),
        (lambda a: [{**a, "startsAt": "yesterday"}], "[1].startsAt", "RFC 3339"),
        (lambda a: [{**a, "endsAt": "2020-01-01T00:00:00Z"}], "[1].endsAt", "before startsAt"),
        (lambda a: [{**a, "generatorURL": "javascript:alert(1)"}], "[1].generatorURL", "http(s)"),
    ],
    ids=[
        "not-a-list",
        "no-labels",
        "empty-labels",
        "no-alertname",
        "label-name",
        "label-value",
        "starts-at",
        "ends-before-start",
        "generator-url",
    ],
)
def test_a_bad_body_is_a_400_naming_the_field_and_stores_nothing(
    anonymous_client, operator_auth, mutate, field, reason
):
    good = _alert(instance="fine")
    body = mutate(_alert())
    if isinstance(body, list):
        body = [good, *body]  # the good alert before the bad one is not kept either
    response = _post(anonymous_client, operator_auth, body)
    assert response.status_code == 400, response.content
    assert response.json()["field"] == field
    assert reason in response.json()["detail"]
    assert not Alert.objects.exists()
    assert not AlertRule.objects.filter(kind=AlertRule.Kind.EXTERNAL).exists()


def test_not_json_is_a_400_and_another_media_type_a_415(anonymous_client, operator_auth):
    assert _post(anonymous_client, operator_auth, b"[{").json()["field"] == "body"
    response = _post(anonymous_client, operator_auth, [_alert()], content_type="text/plain")
    assert response.status_code == 415
    assert not Alert.objects.exists()


def test_posting_needs_an_operator_token(anonymous_client, viewer_auth, operator_client):
    assert _post(anonymous_client, {}, [_alert()]).status_code == 401
    assert _post(anonymous_client, {"HTTP_AUTHORIZATION": "Bearer pp_wrong"}, [_alert()]).status_code == 401
    assert _post(anonymous_client, viewer_auth, [_alert()]).status_code == 403
    assert _post(operator_client, {}, [_alert()]).status_code == 401  # a session is not a token
    assert not Alert.objects.exists()


def test_status_answers_alertmanagers_shape_and_the_probes_answer_anyone(anonymous_client, viewer_auth, fake_slack):
    make_channel(fake_slack.url, severities=["critical"])
    assert anonymous_client.get("/alertmanager/api/v2/status").status_code == 401
    status = anonymous_client.get("/alertmanager/api/v2/status", **viewer_auth).json()
    assert status["cluster"] == {"name": "perfpilot", "peers": [], "status": "ready"}
    assert set(status["versionInfo"]) == {"branch", "buildDate", "buildUser", "goVersion", "revision", "version"}
    assert 'receiver: "ops"' in status["config"]["original"]
    assert datetime.fromisoformat(status["uptime"]) < datetime.now(UTC)
    for probe in ("/alertmanager/-/healthy", "/alertmanager/-/ready"):
        response = anonymous_client.get(probe)
        assert (response.status_code, response.content) == (200, b"OK")


def test_the_alert_page_and_api_show_the_annotations_and_the_source_link(
    anonymous_client, operator_auth, viewer_client
):
    assert _post(anonymous_client, operator_auth, [_alert()]).status_code == 200
    alert = Alert.objects.get()
    shown = viewer_client.get(f"/api/v1/performance/alerts/{alert.id}").json()
    assert (shown["source"], shown["generator_url"]) == ("external", GENERATOR)
    assert shown["annotations"]["runbook_url"] == "https://runbooks.example/instance-down"
    assert shown["title"] == "web-1 is down"
    page = viewer_client.get(f"/alerts/{alert.id}/").content.decode()
    assert "web-1:9100 has not answered for 5 minutes." in page
    assert 'href="https://runbooks.example/instance-down"' in page
    assert 'href="http://prometheus.example:9090/graph?g0.expr=up+%3D%3D+0&amp;g0.tab=1"' in page
    rule_page = viewer_client.get(f"/alerts/rules/{alert.rule_id}/")
    assert rule_page.status_code == 200
    assert "External: sent by Prometheus" in rule_page.content.decode()


@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)
def test_a_real_prometheus_sends_its_alert_through_to_the_fake_slack(
    web_server_url, celery_worker_process, fake_slack, tmp_path
):
    make_channel(fake_slack.url, group_wait_seconds=0)
    token = api_token_create(user=_make_user("prometheus-alerts", OPERATOR), name="prometheus", via="command").raw
    (tmp_path / "rules.yml").write_text(
        """
groups:
  - name: perfpilot-test
    rules:
      - alert: AlwaysFiring
        expr: vector(1)
        for: 0s
        labels: {severity: critical, team: db}
        annotations: {summary: "Always firing", description: "vector(1) is always 1."}
"""
    )
    host = web_server_url.removeprefix("http://")
    process, _port = prometheus_start(
        tmp_path,
        f"""
global: {{evaluation_interval: 1s}}
rule_files: ["{tmp_path / "rules.yml"}"]
alerting:
  alertmanagers:
    - static_configs: [{{targets: ["{host}"]}}]
      path_prefix: /alertmanager
      api_version: v2
      authorization: {{credentials: "{token}"}}
""",
        # Alerts that fire before the notifier knows its Alertmanagers (discovery syncs after ~5 s)
        # are dropped and sent again only after the resend delay, a minute by default.
        "--rules.alert.resend-delay=1s",
    )
    try:
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline and not fake_slack.delivered():
            assert process.poll() is None, (tmp_path / "prometheus.log").read_text()[-2000:]
            time.sleep(0.25)
    finally:
        process.terminate()
        process.wait(timeout=20)
    log = (tmp_path / "prometheus.log").read_text()
    alert = Alert.objects.filter(source="external").first()
    assert alert is not None, f"no alert arrived; Prometheus's log ends: {log[-2000:]}"
    delivered = fake_slack.delivered()
    assert delivered, f"nothing reached Slack: {list(Notification.objects.values('status', 'last_error'))}"
    assert delivered[0].payload["text"].startswith("[CRITICAL] Always firing")
    assert alert.labels == {"alertname": "AlwaysFiring", "severity": "critical", "team": "db"}
    assert alert.generator_url.startswith("http://")
    assert "Error sending alert" not in log
