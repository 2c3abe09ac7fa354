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
