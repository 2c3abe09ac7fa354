"""One shared Redis client for control-plane bookkeeping (heartbeats, health, locks)."""

from __future__ import annotations

from functools import lru_cache

import redis
from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver


@lru_cache(maxsize=1)
def get_redis() -> redis.Redis:
    timeout = settings.HEALTH_CHECK_TIMEOUT_SECONDS
    return redis.Redis.from_url(
        settings.REDIS_URL,
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        health_check_interval=30,
        decode_responses=True,
    )


@receiver(setting_changed)
def _reset_client(*, setting: str, **kwargs) -> None:
    if setting in ("REDIS_URL", "HEALTH_CHECK_TIMEOUT_SECONDS"):
        get_redis.cache_clear()
