"""The beat scheduler: django-celery-beat's DatabaseScheduler plus a heartbeat on every tick."""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django_celery_beat.schedulers import DatabaseScheduler

from core.heartbeat import beat_heartbeat_write
from core.outages import failure_log

logger = logging.getLogger(__name__)


class HeartbeatScheduler(DatabaseScheduler):
    _last_heartbeat = 0.0

    def tick(self, *args, **kwargs):
        interval = super().tick(*args, **kwargs)
        now = time.monotonic()
        if now - self._last_heartbeat >= settings.HEARTBEAT_INTERVAL_SECONDS:
            try:
                beat_heartbeat_write()
                self._last_heartbeat = now
            except Exception as exc:  # Redis down: beat keeps scheduling once it is back
                failure_log(logger, "beat heartbeat not written", exc)
        # Wake up often enough to keep the heartbeat fresh even with a sparse schedule.
        return min(interval, settings.HEARTBEAT_INTERVAL_SECONDS)
