"""The failure event: sent once the failure is committed, never for a rolled-back one, and a
receiver that raises is logged without stopping the sender or the other receivers."""

from __future__ import annotations

import logging
from contextlib import contextmanager

import pytest
from django.db import transaction

from core.events import SCALING_FAILURE, failure_event, failure_event_send

pytestmark = pytest.mark.django_db(transaction=True)


def _send(service: str) -> None:
    failure_event_send(sender=object, kind=SCALING_FAILURE, target=None, labels={"service": service},
                       message=f"Scaling {service} failed: boom")  # fmt: skip


class Recorder:
    """A receiver that remembers the services it was told about."""

    def __init__(self) -> None:
        self.services: list[str] = []

    def __call__(self, sender, *, labels, **kwargs) -> None:
        self.services.append(labels["service"])


@contextmanager
def connected(*receivers):
    for receiver in receivers:
        failure_event.connect(receiver)
    try:
        yield
    finally:
        for receiver in receivers:
            failure_event.disconnect(receiver)


def test_a_failure_is_sent_after_its_transaction_commits_and_never_when_it_rolls_back():
    received = Recorder()
    with connected(received):
        with transaction.atomic():
            _send("committed")
            assert received.services == []  # receivers must see the failure as stored
        assert received.services == ["committed"]
        with pytest.raises(RuntimeError), transaction.atomic():
            _send("rolled-back")
            raise RuntimeError("the failure's own bookkeeping failed")
    assert received.services == ["committed"]


def test_a_receiver_that_raises_is_logged_and_the_others_still_get_the_event(caplog):
    def explode(sender, **kwargs):
        raise ConnectionError("alerts database unavailable")

    received = Recorder()
    with connected(explode, received), caplog.at_level(logging.ERROR, logger="core.events"):
        _send("checkout")  # outside a transaction: at once, and without raising
    assert received.services == ["checkout"]
    assert "failure event scaling_failure {'service': 'checkout'} not handled by" in caplog.text
    assert "alerts database unavailable" in caplog.text
