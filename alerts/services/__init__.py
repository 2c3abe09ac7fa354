"""Alerts services: evaluation and the state machine, the outbox, delivery, and people's writes.

Other apps report failures with ``alerts.services.alert_event_emit(kind=..., target=..., labels=..., message=...)``.
"""

from __future__ import annotations

from alerts.services.evaluation import alert_event_emit

__all__ = ["alert_event_emit"]
