"""What the apps share: tokens, audit, roles, errors, health, the Redis client, the plug-in registry."""

from __future__ import annotations

__version__ = "0.1.0"
