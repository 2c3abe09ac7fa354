"""Perfpilot's project package: settings, URLs, the API, the Celery app and auth."""

from __future__ import annotations

from config.celery import app as celery_app

__version__ = "0.1.0"
__all__ = ["__version__", "celery_app"]
