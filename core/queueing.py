"""Sending tasks to the workers: the one way Perfpilot queues work, bounded and never half done.

A request that creates a row and then queues a task for it must not leave the row behind when the
broker (Redis or RabbitMQ, core/broker.py) is down: it would wait for a task that never comes
("pending" for ever), and the request would answer a bare 500 after hanging in kombu's retries.
So every task that starts work is sent with `task_send` (now) or `task_send_on_commit` (once the
transaction that wrote the row commits), both of which

- bound the publish: a connection refused or timed out gives up after `PUBLISH_MAX_RETRIES` quick
  retries, and the broker's socket timeouts (settings, `CELERY_BROKER_TRANSPORT_OPTIONS`) bound
  each try, so no request waits more than a few seconds;
- on failure call `on_failure(unsent, error)` with the argument tuples that were not sent, so the
  caller ends what it created (a run becomes terminal with the reason, a claim is given back), and
  then raise `QueueUnavailable`, which the API and the pages answer with 503 and its message.

    task_send_on_commit(execute_run_task, [(run.id,)], on_failure=runs_not_queued)

Callers whose work has its own safety net (the alerts outbox is swept every few seconds) pass
`raise_on_failure=False`: the failure is logged in one line and the request goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from celery import Task, current_app
from django.db import transaction
from kombu.exceptions import KombuError, OperationalError
from redis.exceptions import RedisError

from core.broker import broker_component, broker_where

logger = logging.getLogger(__name__)

PUBLISH_MAX_RETRIES = 1
PUBLISH_RETRY_POLICY = {
    "max_retries": PUBLISH_MAX_RETRIES,
    "interval_start": 0,
    "interval_step": 0.5,
    "interval_max": 0.5,
}
# What a broker that is down, refuses or times out raises from apply_async (kombu wraps most).
PUBLISH_ERRORS: tuple[type[BaseException], ...] = (OperationalError, KombuError, RedisError, OSError)

OnFailure = Callable[[list[tuple], "QueueUnavailable"], None]


class QueueUnavailable(Exception):
    """The task queue (the broker) did not take a task; nothing was left waiting for it."""

    def __init__(self, message: str, *, task: str = "", component: str = "broker") -> None:
        super().__init__(message)
        self.task = task
        self.component = component  # as /readyz names the broker: "redis" or "broker"


def _name(task: Task | str) -> str:
    return task if isinstance(task, str) else task.name


def _publish(task: Task | str, args: tuple, kwargs: dict | None, options: dict) -> str:
    options = {"retry": True, "retry_policy": PUBLISH_RETRY_POLICY, "ignore_result": True, **options}
    if isinstance(task, str):
        result = current_app.send_task(task, args=args, kwargs=kwargs, **options)
    else:
        result = task.apply_async(args=args, kwargs=kwargs, **options)
    return result.id


def _send_all(
    task: Task | str,
    calls: Sequence[tuple],
    *,
    kwargs: dict | None,
    on_failure: OnFailure | None,
    raise_on_failure: bool,
    options: dict,
) -> list[str]:
    sent: list[str] = []
    for index, args in enumerate(calls):
        try:
            sent.append(_publish(task, tuple(args), kwargs, options))
        except PUBLISH_ERRORS as exc:
            error = QueueUnavailable(
                f"The task queue is unavailable ({broker_where()}: {type(exc).__name__}: "
                f"{' '.join(str(exc).split())[:200]}); nothing was queued. Try again shortly.",
                task=_name(task),
                component=broker_component(),
            )
            unsent = [tuple(a) for a in calls[index:]]
            logger.warning("could not queue %s for %d call(s): %s", _name(task), len(unsent), exc)
            if on_failure is not None:
                on_failure(unsent, error)
            if raise_on_failure:
                raise error from exc
            return sent
    return sent


def task_send(
    task: Task | str,
    *,
    args: Sequence[Any] = (),
    kwargs: dict | None = None,
    on_failure: OnFailure | None = None,
    raise_on_failure: bool = True,
    **options: Any,
) -> str | None:
    """Publish one task now (bounded); its task id, or None when it was not sent and not raised."""
    sent = _send_all(
        task,
        [tuple(args)],
        kwargs=kwargs,
        on_failure=on_failure,
        raise_on_failure=raise_on_failure,
        options=options,
    )
    return sent[0] if sent else None


def task_send_on_commit(
    task: Task | str,
    calls: Sequence[Sequence[Any]],
    *,
    kwargs: dict | None = None,
    on_failure: OnFailure | None = None,
    raise_on_failure: bool = True,
    **options: Any,
) -> None:
    """Publish task once per argument tuple in calls, after the current transaction commits (at once
    outside one). One commit hook for the whole batch: when the broker fails, on_failure receives
    every call not sent, and QueueUnavailable leaves the `atomic` block that committed."""
    batch = [tuple(args) for args in calls]
    if not batch:
        return

    def send() -> None:
        _send_all(task, batch, kwargs=kwargs, on_failure=on_failure, raise_on_failure=raise_on_failure, options=options)

    transaction.on_commit(send, robust=not raise_on_failure)
