"""What-if replay of PromQL alert rules: samples written through the remote-write path, replayed through
the evaluation's state machine into episodes (pending from, firing from, resolved at)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from alerts.models import AlertRule
from alerts.services.whatif import rule_replay
from monitoring.models import PromQLSource
from tests.alerts.test_promql_rules import RULES, _promql_rule
from tests.conftest import free_port, perfpilot_remote_write

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("clean_samples")]


def _write_hour(client, auth, now: datetime, breach: tuple[int, int] | None) -> None:
    """jobs_queued{queue="mail"} every 30 s over the last hour: 50 from `breach[0]` up to (not including)
    `breach[1]` seconds ago, 1 otherwise."""
    points = []
    for ago in range(3600, -1, -30):
        value = 50.0 if breach and breach[1] < ago <= breach[0] else 1.0
        points.append((value, round((now - timedelta(seconds=ago)).timestamp() * 1000)))
    perfpilot_remote_write(client, auth, [({"__name__": "jobs_queued", "queue": "mail"}, points)])


def test_a_ten_minute_breach_is_one_episode_firing_after_for_seconds(client, operator_auth):
    now = timezone.now().replace(microsecond=0)
    _write_hour(client, operator_auth, now, breach=(2400, 1800))  # 40 to 30 minutes ago
    rule = _promql_rule("jobs_queued > 10", for_seconds=120, eval_interval_seconds=30)

    replay = rule_replay(rule=AlertRule.objects.get(pk=rule.pk), replay_range="1h", now=now)

    assert replay.step_seconds == 30
    assert replay.firings == 1
    [episode] = replay.episodes
    assert episode.labels == {"alertname": "Queue long", "queue": "mail", "team": "jobs"}
    assert episode.pending_from == now - timedelta(seconds=2400)
    assert episode.firing_from == now - timedelta(seconds=2400 - 120)
    assert episode.resolved_at == now - timedelta(seconds=1800)  # the first step without a breach


def test_a_breach_shorter_than_for_seconds_is_pending_only(client, operator_auth):
    now = timezone.now().replace(microsecond=0)
    _write_hour(client, operator_auth, now, breach=(600, 540))  # two samples: one minute
    rule = _promql_rule("jobs_queued > 10", for_seconds=300)

    replay = rule_replay(rule=AlertRule.objects.get(pk=rule.pk), replay_range="1h", now=now)

    assert replay.firings == 0
    assert [(e.pending_from, e.firing_from) for e in replay.episodes] == [(now - timedelta(seconds=600), None)]


def test_no_breach_gives_no_episode_and_the_api_answers_for_saved_and_unsaved_rules(client, operator_auth):
    now = timezone.now().replace(microsecond=0)
    _write_hour(client, operator_auth, now, breach=None)
    rule = _promql_rule("jobs_queued > 10")

    saved = client.get(f"{RULES}/{rule.id}/replay?replay_range=6h", **operator_auth)
    assert saved.status_code == 200, saved.content
    assert (saved.json()["range"], saved.json()["firings"], saved.json()["episodes"]) == ("6h", 0, [])
    assert saved.json()["step_seconds"] == 6 * 3600 // 500 + 1  # the range over 500 steps, rounded up

    body = {"name": "Q", "kind": "promql", "expression": "jobs_queued > 0", "for_seconds": 60}
    answer = client.post(f"{RULES}/replay?replay_range=1h", body, "application/json", **operator_auth)
    assert answer.status_code == 200, answer.content
    assert answer.json()["firings"] == 1
    [episode] = answer.json()["episodes"]
    assert episode["labels"] == {"alertname": "Q", "queue": "mail"} and episode["resolved_at"] is None


def test_the_replay_names_the_field_at_fault(client, viewer_auth, db):
    down = PromQLSource.objects.create(name="down", url=f"http://127.0.0.1:{free_port()}", timeout_seconds=2)
    cases = [
        ({"kind": "promql", "expression": "jobs_queued >"}, 400, "expression"),
        ({"kind": "promql", "expression": "x", "promql_source_id": down.id}, 502, "promql_source_id"),
        ({"kind": "threshold_above", "metric": "cpu", "warning_threshold": 1}, 400, "kind"),
    ]
    for extra, status, field in cases:
        answer = client.post(f"{RULES}/replay?replay_range=1h", {"name": "Q", **extra}, "application/json",
                             **viewer_auth)  # fmt: skip
        assert (answer.status_code, answer.json().get("field")) == (status, field), (extra, answer.content)


def test_the_rule_page_says_how_often_it_would_have_fired(client, operator_auth, viewer_client):
    now = timezone.now().replace(microsecond=0)
    _write_hour(client, operator_auth, now, breach=(2400, 1800))
    rule = _promql_rule("jobs_queued > 10", for_seconds=120)

    page = viewer_client.get(reverse("alerts:rule", kwargs={"rule_id": rule.id}) + "?replay_range=1h")

    assert page.status_code == 200
    text = " ".join(page.content.decode().split())
    assert "Would have fired 1 time in the last 1h" in text
    assert 'queue="mail"' in text
