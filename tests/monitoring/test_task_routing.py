from __future__ import annotations

import pytest

from config.celery import app


@pytest.mark.parametrize(
    "task,queue",
    [
        ("monitoring.tasks.collect_target_task", "collect"),
        ("monitoring.tasks.rollup_task", "maintenance"),
        ("monitoring.tasks.retention_task", "maintenance"),
        ("core.tasks.ping_task", "default"),
    ],
)
def test_tasks_are_routed_to_their_queue(task, queue):
    route = app.amqp.router.route({}, task)
    assert route["queue"].name == queue
