"""The alerts API: filters, ack and resolve, CRUD of silences, rules and channels, tests, roles, 4xx JSON."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from alerts.models import AlertRule, Channel, Silence
from core.models import AuditEvent
from tests.alerts.conftest import make_alert, make_channel, make_rule

pytestmark = pytest.mark.django_db
BASE = "/api/v1/performance/alerts"


def _post(client, path, body, auth, method="post"):
    return getattr(client, method)(path, data=json.dumps(body), content_type="application/json", **auth)


def test_viewers_list_alerts_with_filters(client, viewer_auth, target):
    rule = make_rule()
    make_alert(rule, target=target, severity="critical", state="firing")
    make_alert(rule, target=target, severity="warning", state="pending", extra_labels={"x": "1"})
    make_alert(rule, target=None, severity="warning", state="resolved", extra_labels={"x": "2"})
    everything = client.get(BASE, **viewer_auth).json()
    assert [a["state"] for a in everything] == ["firing", "pending", "resolved"]
    assert [a["state"] for a in client.get(BASE + "?severity=warning", **viewer_auth).json()] == ["pending", "resolved"]
    assert len(client.get(BASE + "?target=db1", **viewer_auth).json()) == 2
    assert len(client.get(BASE + "?state=firing&silenced=false", **viewer_auth).json()) == 1
    bad = client.get(BASE + "?state=exploded", **viewer_auth)
    assert bad.status_code == 422 and "detail" in bad.json()


def test_operators_ack_and_resolve_viewers_cannot(client, viewer_auth, operator_auth, target):
    alert = make_alert(make_rule(), target=target, state="firing")
    assert _post(client, f"{BASE}/{alert.id}/ack", {"comment": "x"}, viewer_auth).status_code == 403
    acked = _post(client, f"{BASE}/{alert.id}/ack", {"comment": "looking"}, operator_auth).json()
    assert (acked["acked_by"], acked["ack_comment"]) == ("oscar-operator", "looking")
    resolved = _post(client, f"{BASE}/{alert.id}/resolve", {}, operator_auth).json()
    assert resolved["state"] == "resolved" and resolved["history"][0]["to_state"] == "resolved"
    again = _post(client, f"{BASE}/{alert.id}/resolve", {}, operator_auth)
    assert again.status_code == 400 and again.json()["field"] == "state"
    assert client.get(f"{BASE}/999999", **operator_auth).status_code == 404
    assert AuditEvent.objects.filter(action="alerts.alert.ack", actor_name="oscar-operator").exists()


def test_silences_crud_and_the_silenced_filter(client, operator_auth, target):
    alert = make_alert(make_rule(), target=target, state="firing")
    ends = (timezone.now() + timedelta(hours=2)).isoformat()
    body = {"matchers": [{"name": "target", "op": "=", "value": "db1"}], "ends_at": ends, "comment": "deploy"}
    created = _post(client, BASE + "/silences", body, operator_auth)
    assert created.status_code == 201 and created.json()["active"] and created.json()["created_by"] == "oscar-operator"
    silence_id = created.json()["id"]
    listed = client.get(BASE + "?silenced=true", **operator_auth).json()
    assert [(a["id"], a["silence_id"]) for a in listed] == [(alert.id, silence_id)]
    changed = _post(client, f"{BASE}/silences/{silence_id}", {**body, "comment": "longer deploy"}, operator_auth, "put")
    assert changed.json()["comment"] == "longer deploy"
    expired = client.post(f"{BASE}/silences/{silence_id}/expire", **operator_auth).json()
    assert not expired["active"] and Silence.objects.filter(pk=silence_id).exists()
    assert client.get(BASE + "?silenced=true", **operator_auth).json() == []


def test_deleting_a_silence_removes_it_so_it_is_no_longer_found(client, operator_auth):
    # DELETE used to expire the silence and keep it: a GET after a successful DELETE still
    # answered 200, which is not what DELETE means (schemathesis ST301); expiring is POST .../expire.
    ends = (timezone.now() + timedelta(hours=2)).isoformat()
    body = {"matchers": [{"name": "target", "op": "=", "value": "db1"}], "ends_at": ends, "comment": "deploy"}
    silence_id = _post(client, BASE + "/silences", body, operator_auth).json()["id"]
    assert client.delete(f"{BASE}/silences/{silence_id}", **operator_auth).status_code == 204
    assert client.get(f"{BASE}/silences/{silence_id}", **operator_auth).status_code == 404
    assert not Silence.objects.filter(pk=silence_id).exists()


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"matchers": [], "ends_at": "2030-01-01T00:00:00Z", "comment": "x"}, 422, "matchers"),
        (
            {"matchers": [{"name": "a", "op": "=~", "value": "("}], "ends_at": "2030-01-01T00:00:00Z", "comment": "x"},
            400,
            "regular expression",
        ),
        ({"matchers": [{"name": "a", "value": "b"}], "ends_at": "2001-01-01T00:00:00Z", "comment": "x"}, 400, "end"),
    ],
)
def test_bad_silences_get_a_4xx_naming_the_problem(client, operator_auth, body, status, needle):
    response = _post(client, BASE + "/silences", body, operator_auth)
    assert response.status_code == status and needle in json.dumps(response.json())


def test_rules_crud_with_field_errors_and_a_preview(client, operator_auth, viewer_auth, target):
    body = {"name": "Dead tuples", "kind": "threshold_above", "metric": "postgres_connections_used_percent",
            "warning_threshold": 50, "critical_threshold": 90, "for_seconds": 60}  # fmt: skip
    assert _post(client, BASE + "/rules", body, viewer_auth).status_code == 403
    created = _post(client, BASE + "/rules", body, operator_auth)
    assert created.status_code == 201
    rule_id = created.json()["id"]
    inverted = _post(client, BASE + "/rules", {**body, "name": "x", "critical_threshold": 10}, operator_auth)
    assert inverted.status_code == 400 and inverted.json()["field"] == "critical_threshold"
    duplicate = _post(client, BASE + "/rules", body, operator_auth)
    assert duplicate.status_code == 400 and duplicate.json()["field"] == "name"
    unknown = _post(client, BASE + "/rules", {**body, "name": "y", "target_id": 99999}, operator_auth)
    assert unknown.status_code == 400 and unknown.json()["field"] == "target_id"
    changed = _post(client, f"{BASE}/rules/{rule_id}", {**body, "for_seconds": 120}, operator_auth, "put")
    assert changed.json()["for_seconds"] == 120
    assert client.get(f"{BASE}/rules/{rule_id}/preview", **viewer_auth).json() == []
    assert client.delete(f"{BASE}/rules/{rule_id}", **operator_auth).status_code == 204
    assert not AlertRule.objects.filter(pk=rule_id).exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("clean_samples")
def test_the_rule_preview_shows_the_current_value_and_what_the_rule_would_say(client, operator_auth, target):
    from tests.alerts.conftest import write_value

    write_value(target, "postgres_connections_used_percent", 91.5)
    body = {"name": "Preview", "kind": "threshold_above", "metric": "postgres_connections_used_percent",
            "warning_threshold": 80, "critical_threshold": 95}  # fmt: skip
    (row,) = _post(client, BASE + "/rules/preview", body, operator_auth).json()
    assert (row["target"], row["value"], row["severity"]) == ("db1", 91.5, "warning")


def test_channels_crud_never_show_the_url_and_test_sends(client, operator_auth, viewer_auth, fake_slack):
    body = {"name": "ops", "kind": "slack", "url": fake_slack.url, "group_wait_seconds": 0}
    created = _post(client, BASE + "/channels", body, operator_auth)
    assert created.status_code == 201
    out = created.json()
    port = fake_slack.server.server_address[1]
    assert out["url"] == f"http://127.0.0.1:{port}/••••••" and "XXXX" not in json.dumps(out)
    assert (out["group_wait_seconds"], out["group_interval_seconds"], out["repeat_interval_seconds"]) == (0, 300, 14400)
    assert out["send_resolved"] is True
    channel_id = out["id"]
    assert Channel.objects.get().url == fake_slack.url
    kept = _post(client, f"{BASE}/channels/{channel_id}", {**body, "url": "", "name": "ops2"}, operator_auth, "put")
    assert kept.json()["name"] == "ops2" and Channel.objects.get().url == fake_slack.url
    assert _post(client, f"{BASE}/channels/{channel_id}/test", {}, viewer_auth).status_code == 403
    tested = _post(client, f"{BASE}/channels/{channel_id}/test", {}, operator_auth).json()
    assert tested["outcome"] == "sent" and len(fake_slack.delivered()) == 1
    log = client.get(f"{BASE}/channels/{channel_id}/deliveries", **viewer_auth).json()
    assert [(e["outcome"], e["status_code"]) for e in log] == [("sent", 200)]
    bad = _post(client, BASE + "/channels", {**body, "name": "x", "url": "ftp://nope"}, operator_auth)
    assert bad.status_code == 400 and bad.json()["field"] == "url"
    assert client.delete(f"{BASE}/channels/{channel_id}", **operator_auth).status_code == 204


def test_the_api_needs_authentication(client):
    assert client.get(BASE).status_code == 401
    make_channel("http://127.0.0.1:9/x")
    assert client.get(BASE + "/channels").status_code == 401
