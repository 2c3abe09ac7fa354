"""Failure events: the one signal through which an app reports that something it ran has failed.

The optimizer sends it when a tuner run or an apply ends failed, scaling when an evaluation or an
action of a service fails; alerts connects a receiver (alerts/apps.py) that turns each event into
an event alert, so the rules watching that kind fire. Core names the event and not its consumers,
so an app that fails never imports alerts.

Receivers get keyword arguments:

- kind: TUNER_FAILURE, SCALING_FAILURE or PLAN_REGRESSION (the event kinds of alert rules);
- target: the monitoring Target the failure concerns, or None (a scaling service is not a target);
- labels: what failed, as string label values (tuner and action; service, tier and executor; queryid
  and role of a plan regression); they
  identify the alert, so one tuner on one target, or one service, has one alert;
- message: the error, for people.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.dispatch import Signal

logger = logging.getLogger(__name__)

TUNER_FAILURE = "tuner_failure"
SCALING_FAILURE = "scaling_failure"
# Not a failure but an event of the same path: a query's plan changed and it got slower (optimizer).
PLAN_REGRESSION = "plan_regression"

failure_event = Signal()


def failure_event_send(*, sender: type, kind: str, target: Any, labels: dict[str, str], message: str) -> None:
    """Send `failure_event` once the current transaction commits (at once outside a transaction).

    Receivers then see the failure as stored, and a rolled-back failure is never reported. A
    receiver that raises is logged and never undoes or interrupts the sender's own bookkeeping.
    """

    def send() -> None:
        responses = failure_event.send_robust(sender=sender, kind=kind, target=target, labels=labels, message=message)
        for receiver, response in responses:
            if isinstance(response, Exception):
                # send_robust has logged the traceback (logger django.dispatch); this line says which event was lost.
                logger.error("failure event %s %s not handled by %r: %r", kind, labels, receiver, response)

    transaction.on_commit(send)
