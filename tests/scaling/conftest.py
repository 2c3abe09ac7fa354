"""Helpers for scaling tests: a series with a current value, and services on a local webhook."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from monitoring.storage import SeriesSpec, samples_write, series_resolve
from scaling.services.crud import ServiceInput, rule_upsert, service_create
from tests.scaling.servers import RecordingWebhook, serving


def load_series(metric: str, value: float, *, labels: dict | None = None, seconds_ago: float = 1.0) -> int:
    """A series (no target) whose newest sample is `value`."""
    (series_id,) = series_resolve(target_id=None, specs=[SeriesSpec(metric, labels or {})])
    samples_write([(series_id, timezone.now() - timedelta(seconds=seconds_ago), value)])
    return series_id


def webhook_service(
    name: str, url: str, *, series_id: int | None = None, target: float = 50, rule: dict | None = None, **fields
):
    """A service on the webhook at `url` with one rule, "load": on the series, or `rule` (the rule's data)."""
    defaults = {"min_replicas": 1, "max_replicas": 10, "enabled": True, "dry_run": False}
    service = service_create(
        data=ServiceInput(
            name=name,
            executor_kind="webhook",
            executor_config={"url": url, "timeout_seconds": 1},
            **{**defaults, **fields},
        ),
        actor=None,
        via="system",
    )
    rule_upsert(
        service=service,
        name="load",
        data=rule or {"source": "series", "series_id": series_id, "target_value": target},
        actor=None,
        via="system",
    )
    return service


@pytest.fixture
def hook():
    webhook = RecordingWebhook()
    with serving(webhook) as url:
        webhook.url = url
        yield webhook
