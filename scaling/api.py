"""The scaling app's API router, mounted at /api/v1/scaling by config/api.py."""

from __future__ import annotations

from config.endpoints import section_router

router = section_router("scaling")
