"""Scheduled overrides: cron parsing and matching, and their min/max applied by the evaluation."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from core.errors import InvalidInput
from scaling.schedules import cron_matches, cron_validate
from scaling.services.crud import schedule_create
from scaling.services.evaluation import service_evaluate
from tests.scaling.conftest import load_series, webhook_service

MONDAY_10 = datetime(2026, 1, 5, 10, 30, tzinfo=UTC)
SATURDAY_10 = datetime(2026, 1, 10, 10, 30, tzinfo=UTC)
MONDAY_20 = datetime(2026, 1, 5, 20, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("cron", "moment", "matches"),
    [
        ("* 9-17 * * mon-fri", MONDAY_10, True),
        ("* 9-17 * * mon-fri", SATURDAY_10, False),
        ("* 9-17 * * 1-5", MONDAY_20, False),
        ("30 10 5 1 *", MONDAY_10, True),
        ("*/15 * * * *", MONDAY_10, True),
        ("*/20 * * * *", MONDAY_10, False),
        ("* * * * 0", SATURDAY_10, False),
    ],
)
def test_cron_matches_the_minute(cron, moment, matches):
    assert cron_matches(cron, moment) is matches


@pytest.mark.parametrize("bad", ["* * * *", "61 * * * *", "* 25 * * *", "* * * * funday", ""])
def test_bad_cron_is_invalid_input_on_the_cron_field(bad):
    with pytest.raises(InvalidInput) as refused:
        cron_validate(bad)
    assert refused.value.field == "cron"


@pytest.mark.usefixtures("clean_samples")
def test_an_active_override_raises_the_minimum(hook):
    service = webhook_service("office", hook.url, series_id=load_series("app_load", 50), min_replicas=1)
    schedule_create(
        service=service, name="always", cron="* * * * *", min_replicas=4, max_replicas=8, actor=None, via="system"
    )
    decision = service_evaluate(service=service)
    assert decision.desired_replicas == 4
    assert decision.inputs["schedules"] == ["always"]
    assert any("schedule always" in step for step in decision.explanation)


@pytest.mark.usefixtures("clean_samples")
def test_schedule_api_names_the_bad_field(client, operator_auth, hook):
    webhook_service("office", hook.url, series_id=load_series("app_load", 50))
    url = "/api/v1/performance/scaling/services/office/schedules"
    bad = client.post(
        url,
        data=json.dumps({"name": "x", "cron": "* * *", "min_replicas": 1, "max_replicas": 2}),
        content_type="application/json",
        **operator_auth,
    )
    assert bad.status_code == 400 and bad.json()["field"] == "cron"
    good = client.post(
        url,
        data=json.dumps({"name": "office hours", "cron": "* 9-17 * * 1-5", "min_replicas": 3, "max_replicas": 9}),
        content_type="application/json",
        **operator_auth,
    )
    assert good.status_code == 201 and good.json()["cron"] == "* 9-17 * * 1-5"
