"""KeptConnections: the shelf that keeps collector connections between collections of a target."""

from __future__ import annotations

import time

import pytest

from monitoring.collectors import kept
from monitoring.collectors.kept import KeptConnections, kept_connection_count


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


@pytest.fixture
def empty_shelves():
    """Every shelf of this process emptied (collector tests before may have left real connections)."""
    for shelf in list(kept._shelves):
        shelf.close_all()
    yield
    for shelf in list(kept._shelves):
        shelf.close_all()


def test_past_the_bound_the_least_recently_used_connection_over_all_shelves_is_closed(settings, empty_shelves):
    settings.COLLECTOR_MAX_CONNECTIONS = 2
    postgres_like, redis_like = _shelf(), _shelf()
    a, b, c = FakeConnection("a"), FakeConnection("b"), FakeConnection("c")
    postgres_like.put_back(1, "fp", a)
    redis_like.put_back(1, "fp", b)
    assert postgres_like.take(1, "fp") is a
    postgres_like.put_back(1, "fp", a)  # used again: now b is the least recently used
    redis_like.put_back(2, "fp", c)
    assert (a.closed, b.closed, c.closed) == (False, True, False)
    assert kept_connection_count() == 2
    assert redis_like.take(1, "fp") is None and redis_like.take(2, "fp") is c


def test_the_bound_holds_for_real_redis_clients_kept_by_the_collector(settings, empty_shelves):
    from monitoring.collectors.base import collector_for
    from monitoring.models import Target

    settings.COLLECTOR_MAX_CONNECTIONS = 2
    targets = []
    for pk in (910_001, 910_002, 910_003):
        target = Target(pk=pk, name=f"kept-{pk}", kind=Target.Kind.REDIS, timeout_seconds=2)
        target.url = settings.REDIS_URL
        targets.append(target)
    for target in targets:
        collector_for(target).collect()
    assert kept_connection_count() == 2
    from monitoring.collectors.redis import _kept as redis_shelf

    assert redis_shelf.take(910_001, (settings.REDIS_URL, 2.0)) is None  # the first, least recently used
    assert redis_shelf.take(910_003, (settings.REDIS_URL, 2.0)) is not None


def test_worker_processes_report_their_count_for_metrics_and_status(settings, empty_shelves, viewer_client):
    import os

    from core.health import check_all
    from core.heartbeat import PROCESS_STATS_PREFIX, worker_heartbeat_write
    from core.redis_client import get_redis

    worker = f"kept-{os.getpid()}@pytest"
    shelf = _shelf()
    shelf.put_back(1, "fp", FakeConnection("one"))
    kept._last_report = (-1, 0.0)
    kept.connections_report(worker=worker)
    worker_heartbeat_write(worker)
    try:
        body = viewer_client.get("/metrics").content.decode()
        assert f'perfpilot_collector_connections{{pid="{os.getpid()}",worker="{worker}"}} 1.0' in body
        check = next(c for c in check_all() if c.name == "worker")
        assert {"name": worker, "collector_connections": 1} in [
            {k: w[k] for k in ("name", "collector_connections")} for w in check.facts["workers"]
        ]
        assert "target connection" in check.detail and "kept" in check.detail
    finally:
        get_redis().delete(f"{PROCESS_STATS_PREFIX}{worker}:{os.getpid()}", f"perfpilot:heartbeat:worker:{worker}")
