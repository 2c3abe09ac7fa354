"""Reads owned by the control plane."""

from __future__ import annotations

import logging

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet
from django_celery_beat.models import PeriodicTask

from core.broker import broker_queue_lengths
from core.models import ApiToken, AuditEvent
from core.outages import failure_log

logger = logging.getLogger(__name__)

# Which section of the UI shows the schedules of which task module.
SECTION_TASK_PREFIXES = {
    "monitoring": "monitoring.",
    "optimizer": "optimizer.",
    "scaling": "scaling.",
    "alerts": "alerts.",
    "settings": "core.",
}
SECTION_QUEUES = {
    "monitoring": "collect",
    "optimizer": "maintenance",
    "scaling": "scale",
    "alerts": "notify",
    "settings": "default",
}


def api_token_list(*, user: AbstractBaseUser) -> QuerySet[ApiToken]:
    return ApiToken.objects.filter(user=user).order_by("revoked_at", "-created_at")


def audit_event_list(*, limit: int = 50) -> QuerySet[AuditEvent]:
    return AuditEvent.objects.select_related("actor").order_by("-created_at")[:limit]


def schedule_list(*, section: str) -> QuerySet[PeriodicTask]:
    prefix = SECTION_TASK_PREFIXES[section]
    return (
        PeriodicTask.objects.filter(task__startswith=prefix)
        .select_related("interval", "crontab", "clocked", "solar")
        .order_by("name")
    )


def section_summary(*, section: str) -> dict:
    """What the Monitoring, Optimizer, Scaling and Alerts pages (and their API) show today."""
    queue = SECTION_QUEUES[section]
    return {
        "section": section,
        "queue": queue,
        "queue_length": queue_lengths()[queue],
        "schedules": list(schedule_list(section=section)),
    }


def queue_lengths() -> dict[str, int | None]:
    """Messages waiting per Celery queue; None for every queue when the broker cannot be read."""
    try:
        return broker_queue_lengths(queues=settings.TASK_QUEUES)
    except Exception as exc:
        failure_log(logger, "queue lengths unavailable", exc)
        return dict.fromkeys(settings.TASK_QUEUES)
