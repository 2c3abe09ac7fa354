"""Scaling tasks. Thin: each calls one service."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from scaling.models import ScaledService, ScalingDecision
from scaling.services.evaluation import ServiceBusy, decisions_prune, scaling_tick, service_evaluate


# Messages expire after one interval (set on the beat entry): a late tick is skipped, not piled up.
@shared_task(name="scaling.tasks.evaluate_all_task", ignore_result=True, soft_time_limit=120, time_limit=150)
def evaluate_all_task() -> None:
    scaling_tick()


@shared_task(name="scaling.tasks.evaluate_service_task", ignore_result=True, soft_time_limit=120, time_limit=150)
def evaluate_service_task(service_id: int) -> None:
    service = ScaledService.objects.filter(pk=service_id).first()
    if service is not None:
        try:
            service_evaluate(service=service, trigger=ScalingDecision.Trigger.MANUAL)
        except ServiceBusy:
            return  # beat is on it right now; its decision is the answer


@shared_task(name="scaling.tasks.prune_decisions_task", ignore_result=True)
def prune_decisions_task() -> None:
    decisions_prune(days=settings.SCALING_DECISION_RETENTION_DAYS)
