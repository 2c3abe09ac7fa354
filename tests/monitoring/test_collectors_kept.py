"""KeptConnections: the shelf that keeps collector connections between collections of a target."""

from __future__ import annotations

import time

import pytest

from monitoring.collectors.kept import KeptConnections


class FakeConnection:
    """Stands in for a driver connection: the shelf only ever closes what it keeps."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.closed = False

    def close(self) -> None:
        self.closed = True


def _shelf(**kwargs) -> KeptConnections[FakeConnection]:
    return KeptConnections(close=FakeConnection.close, **kwargs)


def test_a_connection_put_back_is_taken_again_for_the_same_fingerprint():
    shelf = _shelf()
    first = FakeConnection("first")
    shelf.put_back(1, ("url", 5.0), first)
    assert shelf.take(1, ("url", 5.0)) is first
    assert not first.closed
    assert shelf.take(1, ("url", 5.0)) is None  # taken: a concurrent collection gets none


def test_a_connection_made_for_another_url_or_timeout_is_closed_not_used():
    shelf = _shelf()
    old = FakeConnection("old")
    shelf.put_back(1, ("old-url", 5.0), old)
    assert shelf.take(1, ("new-url", 5.0)) is None
    assert old.closed
    assert len(shelf) == 0


def test_slots_are_kept_apart():
    shelf = _shelf()
    one, two = FakeConnection("one"), FakeConnection("two")
    shelf.put_back(1, "fp", one)
    shelf.put_back(2, "fp", two)
    assert shelf.take(2, "fp") is two
    assert shelf.take(1, "fp") is one


def test_a_second_connection_put_back_in_a_slot_closes_the_first():
    shelf = _shelf()
    first, second = FakeConnection("first"), FakeConnection("second")
    shelf.put_back(1, "fp", first)
    shelf.put_back(1, "fp", second)
    assert first.closed and not second.closed
    assert shelf.take(1, "fp") is second


def test_a_connection_left_unused_is_closed_at_the_next_put_back_of_any_slot():
    shelf = _shelf(idle_seconds=0.05)
    forgotten, busy = FakeConnection("forgotten"), FakeConnection("busy")
    shelf.put_back("deleted-target", "fp", forgotten)
    time.sleep(0.1)
    shelf.put_back("live-target", "fp", busy)
    assert forgotten.closed and not busy.closed
    assert shelf.take("deleted-target", "fp") is None


def test_a_connection_that_fails_to_close_is_dropped_quietly():
    def close(connection):
        raise OSError("already gone")

    shelf = KeptConnections(close=close)
    shelf.put_back(1, "old", object())
    assert shelf.take(1, "new") is None


def test_close_all_closes_every_kept_connection():
    shelf = _shelf()
    kept = [FakeConnection(str(n)) for n in range(3)]
    for n, connection in enumerate(kept):
        shelf.put_back(n, "fp", connection)
    shelf.close_all()
    assert all(connection.closed for connection in kept) and len(shelf) == 0


def test_a_lent_connection_goes_back_after_success_and_is_closed_after_an_error():
    shelf = _shelf()
    good, bad = FakeConnection("good"), FakeConnection("bad")
    with shelf.lent(1, "fp", good) as lent:
        assert lent is good
    assert shelf.take(1, "fp") is good and not good.closed
    with pytest.raises(OSError), shelf.lent(2, "fp", bad):
        raise OSError("the server went away")
    assert bad.closed
    assert shelf.take(2, "fp") is None
