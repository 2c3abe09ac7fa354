"""The Celery broker as the control plane sees it: Redis (the default) or RabbitMQ (amqp://).

Only tasks go through the broker. Results, heartbeats, locks and the cache stay in Redis
(REDIS_URL) whatever the broker is. What depends on the kind of broker is asked here:

- the transport options (config/settings.py): Redis's visibility timeout and socket options mean
  nothing to RabbitMQ, which gets publisher confirms and socket timeouts instead;
- what an outage of it is called (core.outages, /readyz): "redis" when the broker is the control
  plane's own Redis, else "broker", with its own readiness check;
- how many messages wait in each queue (core.selectors, the Celery collector): LLEN of kombu's
  lists on Redis, a passive queue.declare on RabbitMQ.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Sequence
from functools import lru_cache
from urllib.parse import urlsplit

import amqp
import redis
from celery import current_app
from django.conf import settings
from kombu import Connection
from kombu.exceptions import OperationalError

logger = logging.getLogger(__name__)

AMQP_SCHEMES = frozenset({"amqp", "amqps", "pyamqp"})
REDIS_SCHEMES = frozenset({"redis", "rediss", "socket", "redis+socket"})

# Publisher confirms: a publish returns once RabbitMQ has taken the message (written to disk, as our
# queues are durable and Celery's messages persistent), and one it refuses raises instead of being
# dropped in silence. The socket timeouts bound each publish and its confirm, as Redis's socket
# timeouts do (core/queueing.py), also when RabbitMQ blocks publishers on a memory or disk alarm.
AMQP_TRANSPORT_OPTIONS = {"confirm_publish": True, "read_timeout": 5, "write_timeout": 5}


def broker_scheme(url: str) -> str:
    """The scheme of a broker URL (of its first host when kombu's `;`-separated failover list is used)."""
    return url.split(";", 1)[0].partition("://")[0].lower()


def broker_is_amqp(url: str) -> bool:
    return broker_scheme(url) in AMQP_SCHEMES


def broker_kind_label(url: str) -> str:
    scheme = broker_scheme(url)
    if scheme in AMQP_SCHEMES:
        return "RabbitMQ"
    if scheme in REDIS_SCHEMES:
        return "Redis"
    return scheme or "unknown"


def broker_url() -> str:
    """The broker this process publishes to (the app's own setting, which tests may point elsewhere)."""
    return current_app.conf.broker_url or settings.CELERY_BROKER_URL


def broker_is_control_plane_redis() -> bool:
    return broker_url() == settings.REDIS_URL


def broker_component() -> str:
    """What /readyz and the 503s call the broker: "redis" when it is the control plane's Redis (one
    server, one outage), else "broker"."""
    return "redis" if broker_is_control_plane_redis() else "broker"


def broker_where(url: str | None = None) -> str:
    """ "the RabbitMQ broker at host:port", without user or password, for messages."""
    url = url or broker_url()
    try:
        split = urlsplit(url.split(";", 1)[0])
        place = f" at {split.hostname}:{split.port}" if split.hostname and split.port else ""
        place = place or (f" at {split.hostname}" if split.hostname else "")
    except ValueError:
        place = ""
    return f"the {broker_kind_label(url)} broker{place}"


# --- queue lengths ----------------------------------------------------------------------------


def amqp_queue_lengths(connection: Connection, queues: Sequence[str]) -> dict[str, int]:
    """Messages ready per queue on a RabbitMQ connection (passive queue.declare; messages a worker
    holds unacknowledged are not counted, like kombu's Redis lists). A queue that does not exist
    yet has never been sent to, so it counts 0. Raises kombu's connection and channel errors."""
    lengths: dict[str, int] = {}
    channel = connection.channel()
    try:
        for queue in queues:
            try:
                lengths[queue] = channel.queue_declare(queue=queue, passive=True).message_count
            except amqp.exceptions.NotFound:
                lengths[queue] = 0
                channel = connection.channel()  # RabbitMQ closes the channel on a 404
    finally:
        with contextlib.suppress(Exception):
            channel.close()
    return lengths


class _KeptAmqp:
    """One RabbitMQ connection per process for queue lengths and the readiness check: a new AMQP
    connection per status poll would cost a handshake and two lines in RabbitMQ's log each time."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.connection: Connection | None = None
        self.key: tuple | None = None

    def _open(self, url: str, timeout: float) -> Connection:
        options = {"read_timeout": timeout, "write_timeout": timeout}
        return Connection(url, connect_timeout=timeout, transport_options=options, heartbeat=0)

    def drop(self) -> None:
        if self.connection is not None:
            with contextlib.suppress(Exception):
                self.connection.close()
        self.connection = self.key = None

    def call(self, url: str, timeout: float, work):
        """work(connection) on the kept connection; once more on a new one when the kept one fails
        (a broker restart or an idle connection cut leaves it stale). Raises OperationalError."""
        with self.lock:
            if self.key != (url, timeout):
                self.drop()
            for attempt in (1, 2):
                if self.connection is None:
                    self.connection, self.key = self._open(url, timeout), (url, timeout)
                connection = self.connection
                errors = (*connection.connection_errors, *connection.channel_errors, OSError)
                try:
                    connection.ensure_connection(max_retries=0, interval_start=0)
                    return work(connection)
                except (*errors, OperationalError) as exc:
                    self.drop()
                    if attempt == 2:
                        raise OperationalError(f"{broker_where(url)}: {exc}") from exc
        raise AssertionError("unreachable")


_kept_amqp = _KeptAmqp()


@lru_cache(maxsize=4)
def _redis_broker_client(url: str, timeout: float) -> redis.Redis:
    from core.redis_client import DRIVER_INFO

    return redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout, driver_info=DRIVER_INFO)


def broker_queue_lengths(*, queues: Sequence[str]) -> dict[str, int]:
    """Messages waiting per Celery queue on this control plane's broker. Raises on a broker that
    cannot be read (redis errors, kombu's OperationalError); callers decide what that means."""
    from core.redis_client import celery_queue_lengths, get_redis

    url, timeout = broker_url(), settings.HEALTH_CHECK_TIMEOUT_SECONDS
    if broker_is_amqp(url):
        return _kept_amqp.call(url, timeout, lambda connection: amqp_queue_lengths(connection, queues))
    client = get_redis() if url == settings.REDIS_URL else _redis_broker_client(url, timeout)
    return celery_queue_lengths(client, queues)


def broker_probe() -> tuple[bool, str, dict]:
    """The readiness check of a broker other than the control plane's Redis: its server answers and
    every task queue can be read."""
    url = broker_url()
    if broker_is_amqp(url):

        def work(connection: Connection) -> tuple[str, dict]:
            properties = connection.connection.server_properties
            lengths = amqp_queue_lengths(connection, settings.TASK_QUEUES)
            return f"{properties.get('product', 'RabbitMQ')} {properties.get('version', '?')}", lengths

        server, lengths = _kept_amqp.call(url, settings.HEALTH_CHECK_TIMEOUT_SECONDS, work)
    else:
        client = _redis_broker_client(url, settings.HEALTH_CHECK_TIMEOUT_SECONDS)
        server = f"Redis {client.info('server').get('redis_version', '?')}"
        lengths = broker_queue_lengths(queues=settings.TASK_QUEUES)
    return True, server, {"queues": lengths}
