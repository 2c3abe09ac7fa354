"""core.queueing: tasks are published bounded, and a broker that is down leaves nothing waiting."""

from __future__ import annotations

import logging

import pytest
from celery import shared_task
from django.db import transaction

from core.queueing import QueueUnavailable, task_send, task_send_on_commit


@shared_task(name="tests.core.test_queueing.nothing_task", ignore_result=True)
def nothing_task(n: int) -> None:
    pass


def test_a_task_is_sent_and_its_id_returned():
    task_id = task_send(nothing_task, args=(1,), queue="tests-queueing-nobody")
    assert task_id and len(task_id) == 36


@pytest.mark.usefixtures("broker_down")
def test_with_the_broker_down_sending_raises_queue_unavailable_and_reports_what_was_not_sent():
    reported = []
    with pytest.raises(QueueUnavailable, match=r"The task queue is unavailable .*nothing was queued") as error:
        task_send(nothing_task, args=(7,), on_failure=lambda unsent, exc: reported.append((unsent, str(exc))))
    assert error.value.task == "tests.core.test_queueing.nothing_task"
    assert reported == [([(7,)], str(error.value))]


@pytest.mark.usefixtures("broker_down")
def test_on_commit_the_whole_batch_is_reported_and_the_error_leaves_the_atomic_block(transactional_db):
    reported = []
    with pytest.raises(QueueUnavailable), transaction.atomic():
        task_send_on_commit(nothing_task, [(1,), (2,), (3,)], on_failure=lambda unsent, exc: reported.extend(unsent))
        assert reported == []  # nothing is sent before the commit
    assert reported == [(1,), (2,), (3,)]


@pytest.mark.usefixtures("broker_down")
def test_best_effort_sends_log_one_line_and_go_on(transactional_db, caplog):
    with caplog.at_level(logging.WARNING, logger="core.queueing"), transaction.atomic():
        task_send_on_commit(nothing_task, [(1,)], raise_on_failure=False)
    assert any("could not queue tests.core.test_queueing.nothing_task" in r.getMessage() for r in caplog.records)
    assert all(r.exc_info is None for r in caplog.records)  # a line, not a traceback
