from __future__ import annotations

import logging

from core.logfilters import QuietFrequentTicks


def _record(level: int, message: str) -> logging.LogRecord:
    return logging.LogRecord("celery.app.trace", level, __file__, 1, message, None, None)


def test_routine_lines_of_frequent_ticks_are_dropped_and_everything_else_kept():
    quiet = QuietFrequentTicks()
    assert not quiet.filter(_record(logging.INFO, "Task alerts.tasks.evaluate_rules_task[abc] succeeded in 0.01s"))
    assert not quiet.filter(_record(logging.INFO, "Scheduler: Sending due task Evaluate alert rules (x)"))
    assert quiet.filter(_record(logging.ERROR, "Task alerts.tasks.evaluate_rules_task[abc] raised: boom"))
    assert quiet.filter(_record(logging.INFO, "Task monitoring.tasks.collect_target_task[abc] succeeded"))
