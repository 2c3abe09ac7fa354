"""Log filters: keep the output of `make run` readable."""

from __future__ import annotations

import logging

# Ticks beat sends every second or few seconds: their routine "sent / received / succeeded" lines
# would bury everything else. Warnings and errors about them still show.
FREQUENT_TICKS = (
    "alerts.tasks.evaluate_rules_task",
    "alerts.tasks.sweep_notifications_task",
    "Evaluate alert rules",
    "Sweep alert notifications",
)


class QuietFrequentTicks(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO:
            return True
        message = record.getMessage()
        return not any(tick in message for tick in FREQUENT_TICKS)


# What Celery's consumer logs, without an exception, on each attempt to reach a broker that is down.
CELERY_BROKER_RETRIES = ("Cannot connect to", "Connection to broker lost")


class OutageLines(logging.Filter):
    """An expected outage of PostgreSQL or Redis is one line per component and interval, not a
    traceback per request, task or retry.

    A record that carries an outage's exception (core.outages) is rewritten into the one line that
    says what is down, or dropped when that line was logged less than an interval ago in this
    process. Every other record passes untouched, so an unexpected error keeps its traceback.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        from core.broker import broker_component
        from core.outages import Outage, outage_log_line, outage_of, outage_should_log

        if record.levelno < logging.WARNING:
            return True
        outage = outage_of(record.exc_info[1]) if record.exc_info else None
        if (
            outage is None
            and record.name.startswith("celery")
            # The whole message: Celery passes the line as an argument ("%s (%r)", CONNECTION_RETRY, exc).
            and any(line in record.getMessage() for line in CELERY_BROKER_RETRIES)
        ):
            # Celery's own retry lines ("Cannot connect to redis://… or amqp://…: … Trying again in 4.00
            # seconds…", "Connection to broker lost…"), one per attempt, said without an exception or
            # with one that is a bare socket error (RabbitMQ going away resets the connection).
            outage = Outage(broker_component(), record.getMessage().strip().splitlines()[0][:200])
        if outage is None:
            return True
        if not outage_should_log(outage):
            return False
        context = record.getMessage().strip().splitlines()
        record.msg = outage_log_line(outage) + (f" (while: {context[0][:200]})" if context else "")
        record.args = None
        record.exc_info = None
        record.exc_text = None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True
