"""Fixtures for alerts tests: the fake Slack server, a target with series, rules and channels."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from alerts.models import AlertRule, Channel
from alerts.services.manage import ChannelInput, RuleInput, channel_create, rule_create
from core.redis_client import get_redis
from monitoring import storage
from monitoring.models import Target
from tests.alerts.fake_slack import FakeSlack


@pytest.fixture
def fake_slack():
    server = FakeSlack().start()
    yield server
    server.stop()


def refill_buckets() -> None:
    """Token buckets live in Redis under channel ids: start each test (or step) with full ones."""
    client = get_redis()
    for key in client.scan_iter("perfpilot:alerts:bucket:*"):
        client.delete(key)


@pytest.fixture(autouse=True)
def _fresh_buckets():
    refill_buckets()


@pytest.fixture
def target(db):
    return Target.objects.create(name="db1", kind=Target.Kind.POSTGRES, url_display="postgresql://db1")


def write_value(target: Target, metric: str, value: float, *, at: datetime | None = None, labels=None) -> int:
    (series_id,) = storage.series_resolve(
        target_id=target.id, specs=[storage.SeriesSpec(metric=metric, labels=labels or {})]
    )
    storage.samples_write([(series_id, at or timezone.now(), value)])
    return series_id


def make_rule(**overrides) -> AlertRule:
    fields = {
        "name": "Connections high",
        "kind": AlertRule.Kind.THRESHOLD_ABOVE,
        "metric": "postgres_connections_used_percent",
        "warning_threshold": 80.0,
        "critical_threshold": 95.0,
        "window_seconds": 3600,
        "eval_interval_seconds": 1,
    }
    fields.update(overrides)
    return rule_create(data=RuleInput(**fields), actor=None, via="system")


def make_channel(url: str, **overrides) -> Channel:
    fields = {"name": "ops", "kind": "slack", "url": url, "group_wait_seconds": 0}
    fields.update(overrides)
    return channel_create(data=ChannelInput(**fields), actor=None, via="system")


def later(seconds: float) -> datetime:
    return timezone.now() + timedelta(seconds=seconds)


def make_alert(rule: AlertRule, *, target: Target | None = None, severity: str = "warning", value: float = 85.0,
               threshold: float = 80.0, state: str = "firing", extra_labels: dict | None = None, now=None):  # fmt: skip
    """An alert in a given state, stored as evaluation would (for outbox and delivery tests)."""
    from alerts.models import Alert
    from alerts.services.matching import fingerprint

    now = now or timezone.now()
    labels = {"alertname": rule.name, "target": target.name if target else "", "metric": rule.metric,
              **(extra_labels or {})}  # fmt: skip
    return Alert.objects.create(
        rule=rule, fingerprint=fingerprint(labels), labels=labels, target=target, metric=rule.metric, state=state,
        severity=severity, value=value, threshold=threshold, since=now, fired_at=now, last_breach_at=now,
    )  # fmt: skip


def enqueue(alert, *, now=None):
    from django.db import transaction

    from alerts.services.outbox import notification_enqueue

    with transaction.atomic():
        return notification_enqueue(alert=alert, now=now)
