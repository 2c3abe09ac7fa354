"""Outages of the control plane's own PostgreSQL, Redis or broker: one way to recognise, answer and log them.

An outage is expected (a restart, a failover, the supervisor bringing an embedded server back), so
nothing answers 500 for it and no traceback is logged. Every door answers 503 in its own format:

- the API: JSON `{"detail": "..."}` (the API's own error format);
- /metrics: plain text, which is what a Prometheus scraper shows;
- an HTMX request: a small fragment retargeted into the page's `#outage-notice` slot;
- any other page: the styled 503 page naming what is down.

The log gets one line per component per `OUTAGE_LOG_INTERVAL_SECONDS` and process, saying what is
down and why, instead of a traceback per request or task (see `core.logfilters.OutageLines`).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template import loader
from kombu.exceptions import OperationalError as BrokerOperationalError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from core.broker import broker_component

logger = logging.getLogger("perfpilot.outage")

OUTAGE_LOG_INTERVAL_SECONDS = 60.0
RETRY_AFTER_SECONDS = 5

# SQLSTATEs that mean the database cannot take the work right now (full disk, out of memory, too
# many connections, shutting down, read-only after a failover, a statement timeout), not that the
# request or our code is wrong: the client should retry, so they are a 503, not a 500.
_UNAVAILABLE_SQLSTATE_CLASSES = ("08", "53", "57")
_UNAVAILABLE_SQLSTATES = ("25006",)  # read_only_sql_transaction


@dataclass(frozen=True)
class Outage:
    component: str  # "database", "redis" or "broker" (a broker other than our Redis), as /readyz names them
    reason: str  # the first line of the error, for the log and the operator

    @property
    def subject(self) -> str:
        """What is down, as the subject of a sentence ("The database is unavailable")."""
        return COMPONENT_SUBJECTS[self.component]


COMPONENT_SUBJECTS = {"database": "The database", "redis": "Redis", "broker": "The task broker"}


def database_unavailable(exc: DatabaseError) -> bool:
    """A DatabaseError whose SQLSTATE says the database cannot take work now (not a wrong query)."""
    sqlstate = getattr(exc.__cause__, "sqlstate", None) or ""
    return sqlstate[:2] in _UNAVAILABLE_SQLSTATE_CLASSES or sqlstate in _UNAVAILABLE_SQLSTATES


def _chain(exc: BaseException | None):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def outage_of(exc: BaseException | None) -> Outage | None:
    """The outage an exception (or one it was raised from) stands for, or None for any other error.

    Only Django's own database errors count for the database: a target's PostgreSQL is reached
    with psycopg directly and its errors belong to the target, not to the control plane.
    """
    for error in _chain(exc):
        if isinstance(error, (OperationalError, InterfaceError)) or (
            isinstance(error, DatabaseError) and database_unavailable(error)
        ):
            return Outage("database", _first_line(error))
        if isinstance(error, BrokerOperationalError):
            return Outage(broker_component(), _first_line(error))
        if isinstance(error, (RedisConnectionError, RedisTimeoutError)):
            return Outage("redis", _first_line(error))
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


# --- the one log line per outage ---------------------------------------------------------------

_last_logged: dict[str, float] = {}
_last_logged_lock = threading.Lock()


def outage_should_log(outage: Outage, *, now: float | None = None) -> bool:
    """True the first time an outage of this component is seen in OUTAGE_LOG_INTERVAL_SECONDS."""
    now = time.monotonic() if now is None else now
    with _last_logged_lock:
        last = _last_logged.get(outage.component)
        if last is not None and now - last < OUTAGE_LOG_INTERVAL_SECONDS:
            return False
        _last_logged[outage.component] = now
        return True


def outage_log_line(outage: Outage) -> str:
    return (
        f"{outage.subject} is unavailable ({outage.reason}); answering 503 and retrying. "
        f"Further errors about it are not logged for {OUTAGE_LOG_INTERVAL_SECONDS:.0f} s."
    )


def outage_note(outage: Outage) -> None:
    """Log that a component is down, at most once per interval per process."""
    if outage_should_log(outage):
        logger.warning(outage_log_line(outage))


def outage_log_reset() -> None:
    """Forget when outages were last logged (tests)."""
    with _last_logged_lock:
        _last_logged.clear()


# --- the 503 answers --------------------------------------------------------------------------


def _message(outage: Outage) -> str:
    return f"{outage.subject} is unavailable; nothing was written. Try again shortly."


def outage_response(request: HttpRequest, outage: Outage) -> HttpResponse:
    """The 503 for this request's door. Rendered without the request: its context (the user, the
    session) may itself need the database that is down."""
    path = request.path
    if path.startswith("/api/"):
        response = JsonResponse({"detail": _message(outage), "component": outage.component}, status=503)
    elif path == "/metrics":
        response = HttpResponse(_message(outage) + "\n", status=503, content_type="text/plain; charset=utf-8")
    elif request.headers.get("HX-Request") == "true":
        # A fragment for the page's notice slot, not for the element that asked (a polled chart
        # replaced by an error would stop polling); static/js/perfpilot.js swaps 503s in.
        html = loader.render_to_string("_outage_notice.html", {"outage": outage})
        response = HttpResponse(html, status=503)
        response["HX-Retarget"] = "#outage-notice"
        response["HX-Reswap"] = "innerHTML"
    else:
        html = loader.get_template("503.html").render({"component": outage.subject})
        response = HttpResponse(html, status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    response["Cache-Control"] = "no-store"
    # Already said once by outage_note: Django's request logger need not add a line per request.
    response._has_been_logged = True
    return response


def outage_answer(request: HttpRequest, exc: BaseException) -> HttpResponse | None:
    """The 503 for an exception that is an outage (logged once), or None for any other error."""
    outage = outage_of(exc)
    if outage is None:
        return None
    outage_note(outage)
    return outage_response(request, outage)


def failure_log(log: logging.Logger, message: str, exc: BaseException) -> None:
    """Log an error a caller handled: an outage as its one line per interval, anything else as
    `message: error` on the caller's logger (a heartbeat not written, queue lengths unknown…)."""
    outage = outage_of(exc)
    if outage is not None:
        outage_note(outage)
    else:
        log.warning("%s: %s", message, exc)
