"""Celery signal handlers of core.signals that need no running worker."""

from __future__ import annotations

import gc

from celery.signals import worker_process_init

import core.signals  # noqa: F401  (connects the handlers)


def test_a_pool_process_freezes_its_start_up_objects_out_of_garbage_collection():
    gc.unfreeze()
    try:
        worker_process_init.send(sender=None)  # what Celery sends in each pool process it starts
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
