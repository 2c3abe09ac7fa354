"""Settings for `make test`: the same settings, on their own embedded servers and data dir.

Tests never touch the data of `make run`. Each default below can still be overridden, e.g.
DATABASE_URL and REDIS_URL to run the suite against external servers.
"""

from __future__ import annotations

import os
from pathlib import Path

_base = Path(__file__).resolve().parent.parent
os.environ.setdefault("PERFPILOT_VAR_DIR", str(_base / "var" / "test"))
os.environ.setdefault("PERFPILOT_EMBEDDED_PG_PORT", "54339")
os.environ.setdefault("PERFPILOT_EMBEDDED_REDIS_PORT", "63791")
os.environ.setdefault("PERFPILOT_HEARTBEAT_INTERVAL", "1")

from config.settings import *  # noqa: E402,F403

# Tests serve static files straight from the source folders (no collectstatic before each run), so
# they keep Django's plain storage: the manifest of hashed names exists only after collectstatic.
# tests/test_staticfiles.py checks the production storage after its own collectstatic.
STORAGES = {**STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # speed only; never in production
