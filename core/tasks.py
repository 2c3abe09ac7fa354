"""Control-plane tasks. Thin: each calls one service."""

from __future__ import annotations

import socket

from celery import shared_task
from django.contrib.sessions.models import Session
from django.utils import timezone


@shared_task(name="core.tasks.ping_task")
def ping_task(payload: str) -> dict:
    """Echo back, with who answered: proves a full round trip through broker and worker."""
    return {"payload": payload, "worker_host": socket.gethostname()}


@shared_task(name="core.tasks.clear_sessions_task")
def clear_sessions_task() -> int:
    deleted, _ = Session.objects.filter(expire_date__lt=timezone.now()).delete()
    return deleted
