"""A Celery app of its own for the Celery executor test: its own name, queue and worker process."""

from __future__ import annotations

import os
import time

from celery import Celery

# Never the current app: importing this module in the test process must not redirect the project's
# shared tasks (evaluate_all_task.delay()) to this app's queue.
app = Celery(
    "scaling_e2e", broker=os.environ.get("SCALING_E2E_BROKER", "redis://127.0.0.1:6379/0"), set_as_current=False
)
app.conf.update(
    task_default_queue=os.environ.get("SCALING_E2E_QUEUE", "scaling-e2e"),
    worker_prefetch_multiplier=1,
    task_acks_late=True,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="scaling_e2e.sleep", ignore_result=True)
def sleep_task(seconds: float) -> None:
    time.sleep(seconds)
