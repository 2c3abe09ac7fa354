"""Monitoring tasks. Thin: each calls one service."""

from __future__ import annotations

from celery import shared_task

from monitoring.models import Target
from monitoring.services.collection import collect_target
from monitoring.services.forwarding import forwarding_run
from monitoring.services.retention import retention_run
from monitoring.services.rollups import rollups_run
from monitoring.services.scheduling import collect_scheduled


@shared_task(
    name="monitoring.tasks.collect_target_task", bind=True, ignore_result=True, soft_time_limit=120, time_limit=150
)
def collect_target_task(self, target_id: int, slot: str | None = None) -> None:
    """One target; with a slot (sent by a scheduler) only if no other message took that slot on."""
    if slot is not None:
        collect_scheduled(slots=[(target_id, slot)], worker=self.request.hostname or "")
        return
    target = Target.objects.filter(pk=target_id, enabled=True).first()
    if target is not None:
        collect_target(target=target)


@shared_task(
    name="monitoring.tasks.collect_batch_task", bind=True, ignore_result=True, soft_time_limit=120, time_limit=150
)
def collect_batch_task(self, slots: list[list]) -> None:
    """Cheap collections of one group, [target id, slot] pairs, run concurrently in this one task."""
    collect_scheduled(slots=[(int(target_id), slot) for target_id, slot in slots], worker=self.request.hostname or "")


# One run at a time is enforced inside the service (advisory lock); a run that finds it held returns.
@shared_task(name="monitoring.tasks.rollup_task", ignore_result=True, soft_time_limit=900, time_limit=960)
def rollup_task() -> None:
    rollups_run()


@shared_task(name="monitoring.tasks.retention_task", ignore_result=True)
def retention_task() -> None:
    retention_run()


# One run at a time (a Redis lock inside the service); a run finding it held returns at once.
@shared_task(name="monitoring.tasks.forward_samples_task", ignore_result=True, soft_time_limit=120, time_limit=150)
def forward_samples_task() -> None:
    forwarding_run()
