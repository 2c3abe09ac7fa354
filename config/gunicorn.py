"""gunicorn hooks used by `make run` (and compose.yaml)."""

from __future__ import annotations

import gc
import os


def child_exit(server, worker) -> None:
    # Drop a dead worker's live gauges from the merged Prometheus exposition.
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def post_worker_init(worker) -> None:
    # Load the URLconf (and with it every API router) now rather than on the first request, then
    # move everything loaded so far out of the garbage collector's reach: full collections, which
    # large request bodies trigger, then walk only the objects of the requests themselves.
    from django.urls import get_resolver

    get_resolver().url_patterns  # noqa: B018 -- evaluated for its side effect of importing the URLconf
    gc.freeze()
