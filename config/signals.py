"""Celery signal handlers that start and stop the worker heartbeat."""

from __future__ import annotations

import logging

from celery.signals import worker_ready, worker_shutdown

from config.heartbeat import HeartbeatThread, worker_heartbeat_clear

logger = logging.getLogger(__name__)
_threads: dict[str, HeartbeatThread] = {}


@worker_ready.connect
def start_worker_heartbeat(sender, **kwargs) -> None:
    hostname = sender.hostname
    thread = HeartbeatThread(hostname)
    _threads[hostname] = thread
    thread.start()


@worker_shutdown.connect
def stop_worker_heartbeat(sender, **kwargs) -> None:
    # Clearing the key at once lets /readyz notice a stopped worker without waiting for the TTL.
    hostname = sender.hostname
    thread = _threads.pop(hostname, None)
    if thread is not None:
        thread.stop()
    try:
        worker_heartbeat_clear(hostname)
    except Exception as exc:
        logger.warning("worker heartbeat not cleared: %s", exc)
