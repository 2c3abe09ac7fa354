"""The Celery app. Worker and beat load Django settings (CELERY_* names) from here."""

from __future__ import annotations

import os

from celery import Celery

from core.redis_transport import install as install_redis_transport

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
install_redis_transport()

app = Celery("perfpilot")
app.config_from_object("django.conf:settings", namespace="CELERY")


app.autodiscover_tasks()
