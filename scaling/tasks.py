"""Scaling tasks. Thin: each calls one service."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from scaling.services.evaluation import decisions_prune, scaling_tick


# A tick's message expires after one interval: a tick still queued when the next is due is dropped, not
# piled up behind a slow worker (per-service locks keep overlapping ticks apart anyway).
@shared_task(
    name="scaling.tasks.evaluate_all_task",
    ignore_result=True,
    expires=settings.SCALING_INTERVAL_SECONDS,
    soft_time_limit=120,
    time_limit=150,
)
def evaluate_all_task() -> None:
    scaling_tick()


@shared_task(name="scaling.tasks.prune_decisions_task", ignore_result=True)
def prune_decisions_task() -> None:
    decisions_prune(days=settings.SCALING_DECISION_RETENTION_DAYS)
