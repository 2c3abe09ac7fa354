"""The Celery transport for a Redis broker: kombu's, made to lose nothing across a Redis outage.

kombu's Redis transport takes a message off its queue in two steps: BRPOP pops it, then a second
command records it as unacknowledged (a hash plus an index by time). It is handed back to the
queue only when it is rejected, when its channel closes, or when it has been unacknowledged for
longer than the visibility timeout (31 minutes here, as tasks may run for 30). Around a Redis
outage that loses or holds work:

- a message popped just before Redis went away, whose recording failed, exists only in this
  worker's memory and was dropped;
- messages the worker had reserved but not started are forgotten by Celery when it reconnects,
  and the channel could not hand them back because Redis was down when it closed; they waited for
  the visibility timeout;
- a task that ran through the outage could not acknowledge afterwards (its channel was closed),
  so the visibility timeout ran it a second time.

This transport keeps, per worker process, what it could not do while Redis was away, and does it
on the next connection that consumes (`_Ledger.settle`): it pushes popped messages back, hands
back the reserved ones, and completes the acknowledgements. A task that is running when the
channel closes is not handed back (it would run twice); it acknowledges through the live channel
when it ends. Only a SIGKILL of the worker while Redis is down loses the ledger; those messages are
still recovered by the visibility timeout, as before.

`install()` (called by config/celery.py) makes it the transport of every `redis://` connection kombu
opens in our processes, whatever URL a caller passes; `amqp://` and the rest are untouched.
"""

from __future__ import annotations

import logging
import threading
import weakref

import kombu.transport
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual

logger = logging.getLogger(__name__)


def _running_delivery_tags() -> set[str]:
    """Delivery tags of the tasks this worker is executing (none outside a worker or when it stops)."""
    from celery.worker import state

    if state.should_stop is not None or state.should_terminate is not None:
        return set()  # shutting down: hand everything back, as kombu does
    tags = set()
    for request in tuple(state.active_requests):
        message = getattr(request, "message", None)
        if message is not None and message.delivery_tag:
            tags.add(message.delivery_tag)
    return tags


class _Ledger:
    """What this process owes the broker since Redis went away, settled on the next good connection."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.popped: list[dict] = []  # raw messages popped but never recorded as unacknowledged
        self.reserved: set[str] = set()  # recorded, never started: hand back to their queue
        self.acked: set[str] = set()  # done: remove from the unacknowledged hash
        self._live: weakref.ReferenceType | None = None

    def hold_popped(self, raw: dict) -> None:
        with self._lock:
            self.popped.append(raw)

    def hold_reserved(self, tags) -> None:
        with self._lock:
            self.reserved.update(tags)

    def hold_ack(self, tag: str) -> None:
        with self._lock:
            self.acked.add(tag)

    def live_channel(self):
        channel = self._live() if self._live is not None else None
        return channel if channel is not None and channel.connection is not None else None

    def consuming(self, channel) -> None:
        self._live = weakref.ref(channel)
        self.settle(channel)

    def settle(self, channel) -> None:
        """Do what was owed, on this channel's connection; what fails stays owed."""
        with self._lock:
            popped, reserved, acked = list(self.popped), set(self.reserved), set(self.acked)
        if not (popped or reserved or acked):
            return
        done_popped, done_reserved, done_acked = 0, set(), set()
        try:
            with channel.conn_or_acquire() as client:
                for tag in acked:
                    channel.qos._remove_from_indices(tag, client.pipeline()).execute()
                    done_acked.add(tag)
                for tag in reserved:
                    channel.qos.restore_by_tag(tag, client)
                    done_reserved.add(tag)
                for raw in popped:
                    delivery = raw["properties"]["delivery_info"]
                    channel._do_restore_message(raw, delivery["exchange"], delivery["routing_key"], client)
                    done_popped += 1
        except channel.connection_errors as exc:
            logger.warning("broker: Redis is still not answering (%s); will retry on the next connection", exc)
        with self._lock:
            del self.popped[:done_popped]
            self.reserved -= done_reserved
            self.acked -= done_acked
        if done_popped or done_reserved or done_acked:
            logger.warning(
                "broker: Redis is back; handed back %d message(s) taken off the queue as it went away "
                "and %d reserved but not started, and completed %d acknowledgement(s)",
                done_popped,
                len(done_reserved),
                len(done_acked),
            )


ledger = _Ledger()


class QoS(kombu_redis.QoS):
    def append(self, message, delivery_tag) -> None:
        try:
            super().append(message, delivery_tag)
        except self.channel.connection_errors:
            # Popped, not recorded: nobody but this process has it any more.
            ledger.hold_popped(message._raw)
            raise

    def ack(self, delivery_tag) -> None:
        if self.channel.connection is None:
            # The channel closed in an outage while its task kept running: acknowledge through the
            # channel that consumes now (a Redis delivery tag is not tied to its channel).
            live = ledger.live_channel()
            try:
                if live is None:
                    raise ConnectionError("no live channel")
                live.qos._remove_from_indices(delivery_tag).execute()
            except (ConnectionError, *self.channel.connection_errors):
                ledger.hold_ack(delivery_tag)
            virtual.QoS.ack(self, delivery_tag)
            return
        try:
            super().ack(delivery_tag)
        except self.channel.connection_errors:
            ledger.hold_ack(delivery_tag)
            virtual.QoS.ack(self, delivery_tag)

    def restore_unacked(self, client=None):
        running = _running_delivery_tags()
        waiting = [tag for tag in self._delivered if tag not in running]
        self._delivered.clear()
        restored = set()
        try:
            with self.channel.conn_or_acquire(client) as client:
                for tag in waiting:
                    self.restore_by_tag(tag, client=client)
                    restored.add(tag)
        except self.channel.connection_errors:
            ledger.hold_reserved(tag for tag in waiting if tag not in restored)


class Channel(kombu_redis.Channel):
    QoS = QoS

    def basic_consume(self, queue, *args, **kwargs):
        consumer_tag = super().basic_consume(queue, *args, **kwargs)
        ledger.consuming(self)
        return consumer_tag


class RedisTransport(kombu_redis.Transport):
    Channel = Channel


def install() -> None:
    """Serve the `redis` scheme with this transport: kombu resolves a URL's scheme through its aliases,
    so this covers every connection, also those made with an explicit URL (a per-app `broker_transport`
    would be applied to `amqp://` URLs too)."""
    kombu.transport.TRANSPORT_ALIASES["redis"] = "core.redis_transport:RedisTransport"
    kombu.transport._transport_cache.pop("redis", None)
