"""Control-plane tasks. Thin: each calls one service."""

from __future__ import annotations

import socket

from celery import shared_task
from django.contrib.sessions.models import Session
from django.utils import timezone


@shared_task(name="core.tasks.ping_task", bind=True)
def ping_task(self, payload: str) -> dict:
    """Echo back, with who answered (the machine and the worker's node name): proves a full round
    trip through broker and worker, and which worker took it."""
    return {"payload": payload, "worker_host": socket.gethostname(), "worker": self.request.hostname}


@shared_task(name="core.tasks.clear_sessions_task")
def clear_sessions_task() -> int:
    deleted, _ = Session.objects.filter(expire_date__lt=timezone.now()).delete()
    return deleted
