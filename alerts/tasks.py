"""Alerts tasks, all on the "notify" queue. Thin: each calls one service."""

from __future__ import annotations

from celery import shared_task

from alerts.services.delivery import notification_deliver, notifications_sweep
from alerts.services.evaluation import rules_evaluate_due


@shared_task(name="alerts.tasks.evaluate_rules_task", ignore_result=True, soft_time_limit=100, time_limit=120)
def evaluate_rules_task() -> None:
    rules_evaluate_due()


# acks_late (the project default): a worker killed mid-send leaves the row claimed; the sweep
# reclaims it after PERFPILOT_ALERTS_CLAIM_TIMEOUT and it is sent once more.
@shared_task(name="alerts.tasks.deliver_notification_task", bind=True, ignore_result=True, acks_late=True)
def deliver_notification_task(self, notification_id: int) -> str:
    return notification_deliver(notification_id=notification_id, worker=self.request.hostname or "").outcome


@shared_task(name="alerts.tasks.sweep_notifications_task", ignore_result=True, soft_time_limit=50, time_limit=60)
def sweep_notifications_task() -> None:
    notifications_sweep()
