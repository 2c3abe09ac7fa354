"""Cron expressions of scheduled overrides: validated on save, matched against a given minute.

Parsing is Celery's crontab parser (five fields: minute hour day-of-month month day-of-week,
day-of-week 0 or 7 = Sunday, names like mon-fri allowed); matching is pure so the evaluator's
callers and the what-if replay give the same answer for the same minute.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache

from celery.schedules import crontab

from core.errors import InvalidInput


@lru_cache(maxsize=1024)
def _parse(expression: str) -> crontab:
    fields = expression.split()
    if len(fields) != 5:
        raise InvalidInput(
            "A cron expression has five fields: minute hour day-of-month month day-of-week.", field="cron"
        )
    minute, hour, day_of_month, month_of_year, day_of_week = fields
    try:
        return crontab(
            minute=minute,
            hour=hour,
            day_of_month=day_of_month,
            month_of_year=month_of_year,
            day_of_week=day_of_week,
        )
    except (ValueError, KeyError) as exc:
        raise InvalidInput(f"The cron expression cannot be parsed: {exc}", field="cron") from exc


def cron_validate(expression: str) -> str:
    expression = " ".join(expression.split())
    _parse(expression)
    return expression


def cron_matches(expression: str, moment: datetime) -> bool:
    """Whether the minute of `moment` (in its own time zone) matches the expression."""
    schedule = _parse(" ".join(expression.split()))
    return (
        moment.minute in schedule.minute
        and moment.hour in schedule.hour
        and moment.day in schedule.day_of_month
        and moment.month in schedule.month_of_year
        and moment.isoweekday() % 7 in schedule.day_of_week
    )
