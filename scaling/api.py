"""The scaling app's API router, mounted at /api/v1 by config/api.py (paths carry their own prefix)."""

from __future__ import annotations

from config.endpoints import section_router

router = section_router("scaling")
