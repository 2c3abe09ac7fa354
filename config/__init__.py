"""Perfpilot's project wiring: settings, URLs, the API mount, the Celery app and gunicorn's hooks."""

from __future__ import annotations

from config.celery import app as celery_app

__all__ = ["celery_app"]
