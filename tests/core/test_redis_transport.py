"""The Redis broker transport loses nothing and acknowledges everything across a Redis outage.

The outage is real and placed exactly: the consumer reaches Redis through a TCP relay that goes
away at the moment the test picks (just after Redis sent a popped message, or while a message is
held), then comes back. kombu talks to the real Redis of the test session through it.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import uuid
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
from celery.worker import state
from django.conf import settings
from kombu import Connection, Consumer, Exchange, Producer, Queue

from core.redis_transport import ledger

TRANSPORT_OPTIONS = {"socket_connect_timeout": 1, "socket_timeout": 2, "retry_on_timeout": False}


class Relay:
    """A TCP relay to Redis that can be cut (every connection closed, new ones refused) and restored."""

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.cut_when_sent: bytes | None = None  # cut right after Redis sends bytes containing this
        self._open = threading.Event()
        self._open.set()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self._open.is_set():
                client.close()  # Redis is "down": the connection is refused at once
                continue
            server = socket.create_connection(self.upstream)
            with self._lock:
                self._pairs.append((client, server))
            threading.Thread(target=self._pipe, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, True), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, from_redis: bool) -> None:
        with contextlib.suppress(OSError):
            while chunk := source.recv(65536):
                if self._open.is_set():
                    with contextlib.suppress(OSError):
                        sink.sendall(chunk)
                if from_redis and self.cut_when_sent and self.cut_when_sent in chunk:
                    self.cut()
        # Close only once the client has hung up: closing a socket with unread data sends a reset,
        # which could make the client drop a reply it already received.
        source.close()

    def cut(self) -> None:
        """Redis goes away: each client gets what was already sent, then end of stream."""
        self._open.clear()
        self.cut_when_sent = None
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for client, server in pairs:
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_WR)
            with contextlib.suppress(OSError):
                server.shutdown(socket.SHUT_RDWR)

    def restore(self) -> None:
        self._open.set()

    def close(self) -> None:
        self.cut()
        self.listener.close()


@pytest.fixture
def redis_url() -> str:
    return settings.CELERY_BROKER_URL


@pytest.fixture
def relay(redis_url):
    parts = urlsplit(redis_url)
    relay = Relay(parts.hostname, parts.port)
    yield relay
    relay.close()


@pytest.fixture(autouse=True)
def _empty_ledger():
    ledger.popped.clear()
    ledger.reserved.clear()
    ledger.acked.clear()
    yield
    ledger.popped.clear()
    ledger.reserved.clear()
    ledger.acked.clear()


@pytest.fixture
def queue():
    name = f"broker-test-{uuid.uuid4().hex[:10]}"
    return Queue(name, Exchange(name), routing_key=name)


def _through(relay: Relay, redis_url: str) -> Connection:
    parts = urlsplit(redis_url)
    netloc = parts.netloc.rsplit("@", 1)[0] + f"@127.0.0.1:{relay.port}"
    return Connection(
        urlunsplit(parts._replace(netloc=netloc)),
        transport="core.redis_transport:RedisTransport",
        transport_options=TRANSPORT_OPTIONS,
    )


def _direct(redis_url: str) -> Connection:
    return Connection(redis_url, transport="core.redis_transport:RedisTransport", transport_options=TRANSPORT_OPTIONS)


def _publish(redis_url: str, queue: Queue, *bodies: str) -> None:
    with _direct(redis_url) as connection:
        producer = Producer(connection.default_channel)
        for body in bodies:
            # The body travels base64-encoded; a header shows it to the relay as it is.
            producer.publish(
                body, headers={"body": body}, exchange=queue.exchange, routing_key=queue.routing_key, declare=[queue]
            )


def _consume(connection: Connection, queue: Queue, *, ack: bool, limit: int) -> list:
    received = []

    def on_message(body, message):
        received.append((body, message))
        if ack:
            message.ack()

    with Consumer(connection, queues=[queue], callbacks=[on_message], prefetch_count=1):
        while len(received) < limit:
            try:
                connection.drain_events(timeout=3)
            except TimeoutError:
                break
    return received


def _unacked(redis_url: str, tags) -> list:
    client = redis.Redis.from_url(redis_url)
    try:
        return [tag for tag in tags if client.hexists("unacked", tag)]
    finally:
        client.close()


def _queue_length(redis_url: str, queue: Queue) -> int:
    client = redis.Redis.from_url(redis_url)
    try:
        return client.llen(queue.name)
    finally:
        client.close()


def test_message_popped_as_redis_goes_away_is_handed_back_and_received_once(relay, redis_url, queue):
    marker = f"first-{uuid.uuid4().hex}"
    _publish(redis_url, queue, marker, "second")
    relay.cut_when_sent = marker.encode()  # Redis goes away just after BRPOP handed this message over

    connection = _through(relay, redis_url)
    with pytest.raises(connection.connection_errors):
        _consume(connection, queue, ack=True, limit=2)
    with contextlib.suppress(*connection.connection_errors):
        connection.release()
    assert len(ledger.popped) == 1
    assert _queue_length(redis_url, queue) == 1  # only "second" is left in Redis: the first is in our ledger

    relay.restore()
    with _through(relay, redis_url) as again:
        received = _consume(again, queue, ack=True, limit=2)
    assert [body for body, _ in received] == [marker, "second"]
    assert ledger.popped == []
    assert _queue_length(redis_url, queue) == 0
    assert _unacked(redis_url, [message.delivery_tag for _, message in received]) == []


def test_reserved_message_of_a_channel_closed_during_the_outage_is_handed_back(relay, redis_url, queue):
    _publish(redis_url, queue, "held")
    connection = _through(relay, redis_url)
    (_, message), *_ = _consume(connection, queue, ack=False, limit=1)
    assert _unacked(redis_url, [message.delivery_tag]) == [message.delivery_tag]

    relay.cut()  # the channel closes while Redis is away: it cannot hand the message back itself
    with contextlib.suppress(*connection.connection_errors):
        connection.release()
    assert ledger.reserved == {message.delivery_tag}

    relay.restore()
    with _through(relay, redis_url) as again:
        received = _consume(again, queue, ack=True, limit=1)
    assert [body for body, _ in received] == ["held"]
    assert _queue_length(redis_url, queue) == 0
    assert received[0][1].headers.get("redelivered") is True
    assert ledger.reserved == set()
    assert _unacked(redis_url, [message.delivery_tag, received[0][1].delivery_tag]) == []


def test_acknowledgement_that_could_not_reach_redis_is_completed_on_reconnect(relay, redis_url, queue):
    _publish(redis_url, queue, "done-during-outage", "next")
    connection = _through(relay, redis_url)
    (_, message), *_ = _consume(connection, queue, ack=False, limit=1)

    relay.cut()
    message.ack()  # the task finished while Redis was away
    assert ledger.acked == {message.delivery_tag}
    with contextlib.suppress(*connection.connection_errors):
        connection.release()

    relay.restore()
    with _through(relay, redis_url) as again:
        received = _consume(again, queue, ack=True, limit=1)
    assert [body for body, _ in received] == ["next"]
    assert _queue_length(redis_url, queue) == 0  # not run a second time
    assert ledger.acked == set()
    assert _unacked(redis_url, [message.delivery_tag]) == []


class _Running:
    def __init__(self, message) -> None:
        self.message = message


def test_task_ending_after_its_channel_closed_acknowledges_through_the_live_channel(redis_url, queue):
    _publish(redis_url, queue, "long", "after")
    old = _direct(redis_url)
    (_, message), *_ = _consume(old, queue, ack=False, limit=1)
    channel = message.channel
    running = _Running(message)
    state.active_requests.add(running)  # as the worker counts a task it is executing
    try:
        old.release()
    finally:
        state.active_requests.discard(running)
    assert channel.connection is None
    assert _unacked(redis_url, [message.delivery_tag]) == [message.delivery_tag]  # not handed back: it runs
    assert _queue_length(redis_url, queue) == 1

    with _direct(redis_url) as live:

        def on_message(body, received):
            received.ack()
            message.ack()  # the long task ends now, on its closed channel

        with Consumer(live, queues=[queue], callbacks=[on_message], prefetch_count=1):
            live.drain_events(timeout=3)
    assert ledger.acked == set()
    assert _unacked(redis_url, [message.delivery_tag]) == []


def test_every_redis_connection_uses_this_transport_and_amqp_is_left_alone(redis_url):
    from core.redis_transport import RedisTransport

    assert isinstance(Connection(redis_url).transport, RedisTransport)
    assert not isinstance(Connection("amqp://guest:guest@127.0.0.1:5672//").transport, RedisTransport)
