"""The Celery collector: queue backlog, workers, tasks in flight, task rates and runtimes.

target.url is the broker (Redis). Options: {"app": "config", "queues": ["celery", ...],
"event_window_seconds": 2}. Queue lengths are read from Redis directly; workers are asked through a
throwaway Celery app (never the project's own, so its configuration cannot leak in), and task rates
and runtimes come from Celery events captured for a short window on every collection.

Metrics (labels in braces):
    celery_queue_length{queue}              messages waiting, all kombu priority lists together
    celery_workers_online                   workers answering a control ping (0 is not a failure)
    celery_tasks_active, celery_tasks_reserved          over all workers
    celery_tasks_succeeded_per_second, celery_tasks_failed_per_second,
    celery_tasks_retried_per_second         events counted over the window / the window's length
    celery_task_runtime_seconds{quantile="0.5"|"0.95"|"0.99"}   of task-succeeded in the window
    celery_worker_tasks_processed_per_second{worker}    COUNTER of the worker's own task total,
                                            so this rate covers the whole interval, not a sample
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

import redis
from celery import Celery
from kombu.exceptions import ChannelError, KombuError
from kombu.exceptions import ConnectionError as KombuConnectionError

from config.redis_client import celery_queue_lengths
from monitoring.collectors.base import COUNTER, Collector, CollectorError, CollectResult, Measurement, register
from monitoring.collectors.redis import redis_client, redis_error_message, scrub

logger = logging.getLogger(__name__)

DEFAULT_QUEUES = ("celery",)
QUANTILES = (0.5, 0.95, 0.99)
_BROKER_ERRORS = (KombuError, KombuConnectionError, ChannelError, redis.RedisError, OSError)


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


def quantile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), for sorted values."""
    position = (len(values) - 1) * q
    lower = int(position)
    upper = min(lower + 1, len(values) - 1)
    return values[lower] + (values[upper] - values[lower]) * (position - lower)


class _BrokerSession:
    """A throwaway Celery app and its broker connection, kept between collections of one target.

    A broadcast (ping, inspect) over a new connection costs ~12 ms of CPU in kombu's set-up of
    clients and channels, four times per collection when workers answer; over a kept connection
    it costs ~3 ms. One conversation uses a session at a time: `busy` is held while it does.
    """

    def __init__(self, app: Celery, connection) -> None:
        self.app = app
        self.connection = connection
        self.busy = threading.Lock()
        self.kept = False  # in _sessions, for the next collections; a temporary one is closed after use
        self.closed = False

    def release(self) -> None:
        if self.busy.locked():
            self.busy.release()

    def close(self) -> None:
        """Stop keeping this session: the next collection opens a new one."""
        self.kept = False
        with _sessions_lock:
            for key, session in list(_sessions.items()):
                if session is self:
                    del _sessions[key]
        if not self.closed:
            self.closed = True
            for closing in (self.connection.release, self.app.close):
                try:
                    closing()
                except Exception:  # already broken: nothing left to release
                    logger.debug("closing a Celery broker session failed", exc_info=True)


_sessions: dict[tuple, _BrokerSession] = {}
_sessions_lock = threading.Lock()


def _broker_session(collector: CeleryCollector) -> tuple[_BrokerSession, bool]:
    """This target's kept session, held for this conversation, and whether it was kept from before.

    A session still busy (a conversation stuck past its deadline) is left alone: this one gets a
    session of its own.
    """
    target = collector.target
    key = (target.pk, target.url, collector._app_name(), collector.timeout)
    with _sessions_lock:
        session = _sessions.get(key)
        if session is not None and session.busy.acquire(blocking=False):
            return session, True
        app = collector._throwaway_app()
        # An explicit URL, and this connection passed to every call: Celery would otherwise prefer
        # the CELERY_BROKER_URL environment variable (the control plane's own broker) to ours.
        fresh = _BrokerSession(app, app.connection_for_write(url=target.url))
        fresh.busy.acquire()
        if session is None:
            _sessions[key] = fresh
            fresh.kept = True
        return fresh, False


@register
class CeleryCollector(Collector):
    kind = "celery"
    label = "Celery"

    def collect(self) -> CollectResult:
        queues = self._queues()
        window = self._event_window()
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
            result.notes.append("No Celery worker answered the ping.")
        return result

    def test_connection(self) -> str:
        url = self.target.url
        try:
            with redis_client(url, timeout=self.timeout) as client:
                version = client.info("server").get("redis_version", "?")
        except redis.RedisError as exc:
            raise CollectorError(self._broker_error(exc)) from exc
        report = self._ask_workers(window=0)
        workers = f"{report.online} worker{'' if report.online == 1 else 's'} online"
        return f"Celery app {self._app_name()}: broker Redis {version}, {workers}"

    # --- options ---------------------------------------------------------------------------------

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
        if isinstance(exc, TimeoutError):
            return f"{where} did not answer within {self.timeout:g} s"
        return scrub(f"{where} could not be used ({exc})", self.target.url)

    def _queue_lengths(self, queues: list[str]) -> dict[str, int]:
        try:
            with redis_client(self.target.url, timeout=self.timeout) as client:
                return celery_queue_lengths(client, queues)
        except redis.RedisError as exc:
            raise CollectorError(self._broker_error(exc)) from exc

    # --- workers ---------------------------------------------------------------------------------

    def _ask_workers(self, *, window: float) -> _WorkerReport:
        """Ping, inspect and listen to the workers, within a hard deadline.

        kombu retries a publish forever when the broker drops mid-call, and no option bounds it, so
        the conversation runs in a daemon thread that we stop waiting for at the deadline.
        """
        report = _WorkerReport()
        thread = threading.Thread(
            target=self._converse, args=(report, window), name=f"celery-collector-{self.target.pk}", daemon=True
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

    def _converse(self, report: _WorkerReport, window: float) -> None:
        session, reused = _broker_session(self)
        try:
            try:
                self._ask(session, report, window)
            except _BROKER_ERRORS:
                session.close()
                if not reused:
                    raise
                # A kept connection can have gone stale (a broker restart): ask once more on a new one.
                session, reused = _broker_session(self)
                self._ask(session, report, window)
        except Exception as exc:  # handed to the caller's thread, which raises it
            session.close()
            report.error = exc
        finally:
            session.release()
            if not session.kept:
                session.close()

    def _ask(self, session: _BrokerSession, report: _WorkerReport, window: float) -> None:
        app, conn = session.app, session.connection
        reply_timeout = min(1.0, self.timeout / 4)
        replies = app.control.ping(timeout=reply_timeout, connection=conn) or []
        workers = {name for reply in replies for name in reply}
        report.online = len(workers)
        if workers:
            # limit= returns as soon as every known worker answered, instead of waiting out the timeout.
            inspect = app.control.inspect(timeout=reply_timeout, connection=conn, limit=len(workers))
            report.active = sum(len(tasks or []) for tasks in (inspect.active() or {}).values())
            report.reserved = sum(len(tasks or []) for tasks in (inspect.reserved() or {}).values())
            for worker, stats in (inspect.stats() or {}).items():
                totals = (stats or {}).get("total") or {}
                report.processed[worker] = sum(int(n) for n in totals.values())
        if window > 0 and workers:  # with no worker there is no event to wait for
            self._capture_events(app, conn, report, window)

    def _throwaway_app(self) -> Celery:
        timeout = self.timeout
        app = Celery(self._app_name(), broker=self.target.url, fixups=[], set_as_current=False)
        app.conf.update(
            broker_connection_timeout=timeout,
            broker_connection_retry=False,
            broker_connection_max_retries=0,
            # max_retries=0: fail on the first refused connection instead of retrying for ever.
            broker_transport_options={"socket_timeout": timeout, "socket_connect_timeout": timeout, "max_retries": 0},
            # No broker_pool_limit: kombu keeps producer pools in a process-wide registry keyed by
            # the broker's address, so a different limit here would resize the pool of the app
            # that runs this collector ("Can't shrink pool when in use") when both use one broker.
        )
        return app

    def _capture_events(self, app: Celery, conn, report: _WorkerReport, window: float) -> None:
        """Count task events for `window` seconds, starting once our event queue is bound."""
        started: list[float] = []

        def on_succeeded(event: dict) -> None:
            report.succeeded += 1
            runtime = event.get("runtime")
            if isinstance(runtime, int | float):
                report.runtimes.append(float(runtime))

        def on_failed(event: dict) -> None:
            report.failed += 1

        def on_retried(event: dict) -> None:
            report.retried += 1

        receiver = app.events.Receiver(
            conn,
            handlers={
                "task-succeeded": on_succeeded,
                "task-failed": on_failed,
                "task-retried": on_retried,
                "*": lambda event: None,
            },
        )
        receiver.connect_max_retries = 1

        def on_consume_ready(connection, channel, consumers, **kwargs) -> None:
            # Enable events only now: on Redis, events published before our queue is bound are lost.
            app.control.enable_events(connection=connection, channel=channel)
            started.append(time.monotonic())

        def on_iteration() -> None:
            if started and time.monotonic() - started[0] >= window:
                receiver.should_stop = True

        receiver.on_consume_ready = on_consume_ready
        receiver.on_iteration = on_iteration
        try:
            for _ in receiver.consume(limit=None, timeout=window + 1, safety_interval=0.1, wakeup=False):
                continue
        except TimeoutError:
            pass  # a quiet broker: the backstop idle timeout, not an error
        if started:
            report.window_seconds = time.monotonic() - started[0]
