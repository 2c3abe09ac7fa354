"""gunicorn hooks used by `make run` (and compose.yaml)."""

from __future__ import annotations

import os


def child_exit(server, worker) -> None:
    # Drop a dead worker's live gauges from the merged Prometheus exposition.
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
