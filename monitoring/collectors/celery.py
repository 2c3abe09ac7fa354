"""The Celery collector: queue backlog, workers, tasks in flight, task rates and runtimes.

target.url is the broker: Redis (redis://, rediss://) or RabbitMQ (amqp://, amqps://). Options:
{"app": "config", "queues": ["celery", ...], "event_window_seconds": 2}. Queue lengths are read from
Redis directly, or on RabbitMQ with a passive queue.declare (messages ready, not those a worker holds
unacknowledged; core/broker.py); workers are asked through a throwaway Celery app (never the
project's own, so its configuration cannot leak in), and task rates and runtimes come from Celery
events captured for a short window on every collection.

Metrics (labels in braces):
    celery_queue_length{queue}              messages waiting (on Redis all kombu priority lists together)
    celery_workers_online                   workers answering `inspect stats` (0 is not a failure)
    celery_tasks_active, celery_tasks_reserved          over all workers
    celery_tasks_succeeded_per_second, celery_tasks_failed_per_second,
    celery_tasks_retried_per_second         events counted over the window / the window's length
    celery_task_runtime_seconds{quantile="0.5"|"0.95"|"0.99"}   of task-succeeded in the window
    celery_worker_tasks_processed_per_second{worker}    COUNTER of the worker's own task total,
                                            so this rate covers the whole interval, not a sample
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit
from uuid import uuid4

import amqp
import redis
from celery import Celery
from celery.events.event import get_exchange
from kombu import Consumer, Queue
from kombu.exceptions import ChannelError, KombuError
from kombu.exceptions import ConnectionError as KombuConnectionError
from kombu.transport import redis as kombu_redis

from core import outbound
from core.broker import amqp_queue_lengths, broker_is_amqp
from core.conninfo import scrub
from core.redis_client import celery_queue_lengths
from monitoring.collectors.base import COUNTER, Collector, CollectorError, CollectResult, Measurement, register
from monitoring.collectors.kept import KeptConnections
from monitoring.collectors.redis import kept_redis_client, redis_client, redis_error_message

logger = logging.getLogger(__name__)

DEFAULT_QUEUES = ("celery",)
QUANTILES = (0.5, 0.95, 0.99)
EVENTS_REENABLE_SECONDS = 60.0
_BROKER_ERRORS = (
    KombuError,
    KombuConnectionError,
    ChannelError,
    redis.RedisError,
    amqp.exceptions.AMQPError,
    outbound.OutboundRefused,
    OSError,
)


@dataclass
class _WorkerReport:
    """What the workers told us; filled in a helper thread (see _ask_workers)."""

    online: int = 0
    active: int = 0
    reserved: int = 0
    processed: dict[str, int] = field(default_factory=dict)
    succeeded: int = 0
    failed: int = 0
    retried: int = 0
    runtimes: list[float] = field(default_factory=list)
    window_seconds: float = 0.0
    error: BaseException | None = None
    queue_lengths: dict[str, int] = field(default_factory=dict)  # RabbitMQ only, read on the session
    server: str = ""  # RabbitMQ only: product and version


def quantile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), for sorted values."""
    position = (len(values) - 1) * q
    lower = int(position)
    upper = min(lower + 1, len(values) - 1)
    return values[lower] + (values[upper] - values[lower]) * (position - lower)


class _BrokerSession:
    """A throwaway Celery app and its broker connection, kept between collections of one target.

    A control broadcast (inspect) over a new connection costs ~12 ms of CPU in kombu's set-up of
    clients and channels, three times per collection when workers answer; over a kept connection
    it costs ~2.5 ms, and the event window reuses it too. It lives on the shelf of kept.py, which
    hands it to one conversation at a time.
    """

    def __init__(self, app: Celery, connection) -> None:
        self.app = app
        self.connection = connection
        self.events_enabled_at: float | None = None  # time.monotonic() of our last enable_events

    def close(self) -> None:
        for closing in (self.connection.release, self.app.close):
            try:
                closing()
            except Exception:  # already broken: nothing left to release
                logger.debug("closing a Celery broker session failed", exc_info=True)


class _RedisChannel(kombu_redis.Channel):
    """kombu's Redis channel, with one redis-py client for its commands instead of one per command.

    kombu builds a client object for each command it sends, and redis-py builds hundreds of
    response callbacks for each client: a third of a control broadcast's CPU. A client only holds
    the connection pool and those callbacks, so one serves every command of the channel.
    """

    # Every connection to the broker goes through the outbound policy (core/outbound.py).
    connection_class = outbound.CheckedConnection
    connection_class_ssl = outbound.CheckedSSLConnection

    def _connparams(self, asynchronous: bool = False):
        params = super()._connparams(asynchronous=asynchronous)
        cls = params["connection_class"]
        if issubclass(cls, kombu_redis.redis.UnixDomainSocketConnection):
            outbound.check_unix(params.get("path", ""), what="The Celery broker")
        return params

    def _create_client(self, asynchronous: bool = False):
        if asynchronous:
            return super()._create_client(asynchronous=True)
        client = self.__dict__.get("_commands_client")
        if client is None:
            client = self.__dict__["_commands_client"] = super()._create_client()
        return client


class _RedisTransport(kombu_redis.Transport):
    Channel = _RedisChannel


_kept: KeptConnections[_BrokerSession] = KeptConnections(close=_BrokerSession.close)


@register
class CeleryCollector(Collector):
    kind = "celery"
    label = "Celery"

    def collect(self) -> CollectResult:
        queues = self._queues()
        window = self._event_window()
        if self._amqp:
            # Read on the conversation's own connection, first, within its deadline.
            report = self._ask_workers(window=window, queues=queues)
            lengths = report.queue_lengths
        else:
            lengths = self._queue_lengths(queues)  # also proves the broker answers before we ask workers
            report = self._ask_workers(window=window)
        result = CollectResult()
        add = result.measurements.append
        for queue, length in lengths.items():
            add(Measurement("celery_queue_length", float(length), {"queue": queue}))
        add(Measurement("celery_workers_online", float(report.online)))
        if report.online:
            add(Measurement("celery_tasks_active", float(report.active)))
            add(Measurement("celery_tasks_reserved", float(report.reserved)))
        for worker, total in sorted(report.processed.items()):
            add(
                Measurement("celery_worker_tasks_processed_per_second", float(total), {"worker": worker}, COUNTER, "/s")
            )
        seconds = report.window_seconds
        if seconds > 0:
            add(Measurement("celery_tasks_succeeded_per_second", report.succeeded / seconds, unit="/s"))
            add(Measurement("celery_tasks_failed_per_second", report.failed / seconds, unit="/s"))
            add(Measurement("celery_tasks_retried_per_second", report.retried / seconds, unit="/s"))
            runtimes = sorted(report.runtimes)
            if runtimes:
                for q in QUANTILES:
                    add(
                        Measurement(
                            "celery_task_runtime_seconds", quantile(runtimes, q), {"quantile": str(q)}, unit="s"
                        )
                    )
            result.notes.append(
                f"Task rates and runtimes are sampled from a {seconds:.1f} s window of Celery events per collection."
            )
        if not report.online:
            result.notes.append("No Celery worker answered.")
        return result

    def test_connection(self) -> str:
        url = self.target.url
        if self._amqp:
            report = self._ask_workers(window=0, queues=[])
            workers = f"{report.online} worker{'' if report.online == 1 else 's'} online"
            return f"Celery app {self._app_name()}: broker {report.server}, {workers}"
        try:
            with redis_client(url, timeout=self.timeout) as client:
                version = client.info("server").get("redis_version", "?")
        except redis.RedisError as exc:
            raise CollectorError(self._broker_error(exc)) from exc
        report = self._ask_workers(window=0)
        workers = f"{report.online} worker{'' if report.online == 1 else 's'} online"
        return f"Celery app {self._app_name()}: broker Redis {version}, {workers}"

    # --- options ---------------------------------------------------------------------------------

    @property
    def _amqp(self) -> bool:
        return broker_is_amqp(self.target.url)

    def _options(self) -> dict:
        options = self.target.options or {}
        if not isinstance(options, dict):
            raise CollectorError("The target's options must be a JSON object.")
        return options

    def _app_name(self) -> str:
        return str(self._options().get("app") or "celery")

    def _queues(self) -> list[str]:
        queues = self._options().get("queues") or list(DEFAULT_QUEUES)
        if not isinstance(queues, list) or not all(isinstance(q, str) and q for q in queues):
            raise CollectorError('The option "queues" must be a list of queue names.')
        return queues

    def _event_window(self) -> float:
        raw = self._options().get("event_window_seconds", min(2.0, self.timeout / 2))
        try:
            window = float(raw)
        except (TypeError, ValueError) as exc:
            raise CollectorError('The option "event_window_seconds" must be a number of seconds.') from exc
        if not 0 < window <= self.timeout:
            raise CollectorError(
                f'The option "event_window_seconds" must be more than 0 and at most the timeout ({self.timeout:g} s).'
            )
        return window

    # --- broker ----------------------------------------------------------------------------------

    def _broker_error(self, exc: BaseException) -> str:
        where = f"The Celery broker at {self.target.url_display or 'the configured URL'}"
        # kombu re-raises redis-py's errors as its own: explain the original one.
        cause: BaseException | None = exc
        while cause is not None and not isinstance(cause, redis.RedisError):
            cause = cause.__cause__ or cause.__context__
        exc = cause or exc
        if isinstance(exc, redis.RedisError):
            return redis_error_message(exc, where=where, timeout=self.timeout, url=self.target.url)
        if isinstance(exc, outbound.OutboundRefused):
            return scrub(f"{where} is refused: {exc}", self.target.url)
        if isinstance(exc, TimeoutError):
            return f"{where} did not answer within {self.timeout:g} s"
        return scrub(f"{where} could not be used ({exc})", self.target.url)

    def _queue_lengths(self, queues: list[str]) -> dict[str, int]:
        try:
            with kept_redis_client(self.target, timeout=self.timeout) as client:
                return celery_queue_lengths(client, queues)
        except redis.RedisError as exc:
            raise CollectorError(self._broker_error(exc)) from exc

    # --- workers ---------------------------------------------------------------------------------

    def _ask_workers(self, *, window: float, queues: list[str] | None = None) -> _WorkerReport:
        """Ping, inspect and listen to the workers, within a hard deadline.

        kombu retries a publish forever when the broker drops mid-call, and no option bounds it, so
        the conversation runs in a daemon thread that we stop waiting for at the deadline.
        """
        report = _WorkerReport()
        thread = threading.Thread(
            target=self._converse, args=(report, window, queues), name=f"celery-collector-{self.target.pk}", daemon=True
        )
        thread.start()
        # Connecting, up to four control round trips of a quarter timeout each, and the window.
        deadline = 2 * self.timeout + window + 1
        thread.join(deadline)
        if thread.is_alive():
            raise CollectorError(
                f"The Celery workers could not be asked within {deadline:g} s; "
                f"the broker at {self.target.url_display or 'the configured URL'} may have stopped answering."
            )
        if isinstance(report.error, _BROKER_ERRORS):
            raise CollectorError(self._broker_error(report.error)) from report.error
        if report.error is not None:
            raise report.error  # a bug, not the broker: let the collection service log it
        return report

    def _converse(self, report: _WorkerReport, window: float, queues: list[str] | None) -> None:
        try:
            self._ask_on_a_session(report, window, queues)
        except Exception as exc:  # handed to the caller's thread, which raises it
            report.error = exc

    def _ask_on_a_session(self, report: _WorkerReport, window: float, queues: list[str] | None) -> None:
        target = self.target
        slot, fingerprint = target.pk, (target.url, self._app_name(), self.timeout)
        kept = _kept.take(slot, fingerprint)
        if kept is not None:
            try:
                with _kept.lent(slot, fingerprint, kept):
                    self._ask(kept, report, window, queues)
                return
            except _BROKER_ERRORS:
                pass  # a kept connection can have gone stale (a broker restart): ask once more on a new one
        session = self._new_session()
        with _kept.lent(slot, fingerprint, session):
            self._ask(session, report, window, queues)

    def _new_session(self) -> _BrokerSession:
        app = self._throwaway_app()
        # An explicit URL, and this connection passed to every call: Celery would otherwise prefer
        # the CELERY_BROKER_URL environment variable (the control plane's own broker) to ours.
        if self._amqp:
            url, ssl = _amqp_checked(self.target.url)
            return _BrokerSession(app, app.connection_for_write(url=url, ssl=ssl))
        return _BrokerSession(app, app.connection_for_write(url=self.target.url, transport=_RedisTransport))

    def _ask(self, session: _BrokerSession, report: _WorkerReport, window: float, queues: list[str] | None) -> None:
        app, conn = session.app, session.connection
        if queues is not None:  # RabbitMQ: the queue lengths, and the connection proved before we ask workers
            report.queue_lengths = amqp_queue_lengths(conn, queues)
            properties = conn.connection.server_properties
            report.server = f"{properties.get('product', 'RabbitMQ')} {properties.get('version', '?')}"
        reply_timeout = min(1.0, self.timeout / 4)
        # No ping: the stats replies name the workers online (waiting out the timeout, as a ping
        # would), and each broadcast costs more CPU than the collection's other work together.
        stats = app.control.inspect(timeout=reply_timeout, connection=conn).stats() or {}
        workers = set(stats)
        report.online = len(workers)
        for worker, worker_stats in stats.items():
            totals = (worker_stats or {}).get("total") or {}
            report.processed[worker] = sum(int(n) for n in totals.values())
        if workers:
            # limit= returns as soon as every known worker answered, instead of waiting out the timeout.
            inspect = app.control.inspect(timeout=reply_timeout, connection=conn, limit=len(workers))
            report.active = sum(len(tasks or []) for tasks in (inspect.active() or {}).values())
            report.reserved = sum(len(tasks or []) for tasks in (inspect.reserved() or {}).values())
        if window > 0 and workers:  # with no worker there is no event to wait for
            self._capture_events(session, report, window)

    def _throwaway_app(self) -> Celery:
        timeout = self.timeout
        app = Celery(self._app_name(), broker=self.target.url, fixups=[], set_as_current=False)
        if self._amqp:
            transport_options = {"read_timeout": timeout, "write_timeout": timeout}
        else:
            # max_retries=0: fail on the first refused connection instead of retrying for ever.
            transport_options = {"socket_timeout": timeout, "socket_connect_timeout": timeout, "max_retries": 0}
        app.conf.update(
            broker_connection_timeout=timeout,
            broker_connection_retry=False,
            broker_connection_max_retries=0,
            broker_transport_options=transport_options,
            # No broker_pool_limit: kombu keeps producer pools in a process-wide registry keyed by
            # the broker's address, so a different limit here would resize the pool of the app
            # that runs this collector ("Can't shrink pool when in use") when both use one broker.
        )
        return app

    def _capture_events(self, session: _BrokerSession, report: _WorkerReport, window: float) -> None:
        """Count task events for `window` seconds on the kept connection, from our subscription on."""
        app, conn = session.app, session.connection
        channel = conn.default_channel
        # On Redis, events go through a fanout (publish/subscribe) exchange: they reach us only while
        # subscribed, and nothing is left behind in the broker when we stop listening. On RabbitMQ the
        # queue is non-durable and auto-deleted: it goes when our consumer is cancelled.
        queue = Queue(
            f"{app.conf.event_queue_prefix}.{uuid4()}",
            exchange=get_exchange(conn, name=app.conf.event_exchange),
            routing_key="#",
            auto_delete=True,
            durable=False,
        )

        def count(event: dict) -> None:
            kind = event.get("type")
            if kind == "task-succeeded":
                report.succeeded += 1
                runtime = event.get("runtime")
                if isinstance(runtime, int | float):
                    report.runtimes.append(float(runtime))
            elif kind == "task-failed":
                report.failed += 1
            elif kind == "task-retried":
                report.retried += 1

        def on_message(body, message) -> None:
            for event in body if isinstance(body, list) else [body]:  # workers may send events in groups
                if isinstance(event, dict):
                    count(event)

        with Consumer(channel, queues=[queue], callbacks=[on_message], accept=["json"], no_ack=True):
            _drain(conn, 0)  # sends the SUBSCRIBE: events from here on reach us
            started = time.monotonic()
            if session.events_enabled_at is None or started - session.events_enabled_at >= EVENTS_REENABLE_SECONDS:
                # Workers keep events on once asked; asking again now and then covers a restarted one.
                app.control.enable_events(connection=conn, channel=channel)
                session.events_enabled_at = started
            while (remaining := started + window - time.monotonic()) > 0:
                _drain(conn, remaining)
        report.window_seconds = time.monotonic() - started


def _amqp_checked(url: str) -> tuple[str, dict | bool]:
    """The URL with its host replaced by an address the outbound policy allows (connect there, no
    second lookup), and kombu's ssl argument keeping the name for TLS (SNI and the certificate)."""
    split = urlsplit(url)
    host, port = split.hostname or "localhost", split.port or (5671 if split.scheme == "amqps" else 5672)
    ip = outbound.resolve(host, port, what="The Celery broker")[0]
    credentials = split.netloc.rpartition("@")[0]
    literal = f"[{ip}]" if ":" in ip else ip
    netloc = f"{credentials}@{literal}:{port}" if credentials else f"{literal}:{port}"
    ssl: dict | bool = {"server_hostname": host} if split.scheme == "amqps" else False
    return urlunsplit(split._replace(netloc=netloc)), ssl


def _drain(conn, timeout: float) -> None:
    """Handle what the broker delivers within `timeout` seconds (returning at the first delivery)."""
    with contextlib.suppress(TimeoutError):  # nothing arrived: a quiet broker, not an error
        conn.drain_events(timeout=timeout)
