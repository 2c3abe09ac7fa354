"""Time ranges shared by pages and the API: presets and parsing of user-given times."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from django.utils import timezone

from core.errors import InvalidInput

RANGE_PRESETS: dict[str, timedelta] = {
    "1h": timedelta(hours=1),
    "6h": timedelta(hours=6),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
}
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
_RELATIVE = re.compile(r"-([0-9]{1,12})([smhd])")
# Times outside these years are refused: nothing is recorded before 1970, and arithmetic on a
# range (bins, steps, retention) must not run off the ends of what datetime can hold.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)


def parse_time(value: str, field: str, *, now: datetime | None = None) -> datetime:
    """ISO 8601, Unix seconds, "now", or relative like "-6h" / "-30d", between 1970 and 9000.

    Anything else, or a time outside those years, is an InvalidInput naming `field`.
    """
    text = value.strip()
    now = now or timezone.now()
    if text == "now":
        return now
    try:
        parsed = _parse(text, now)
    except (ValueError, OverflowError, OSError) as exc:
        raise InvalidInput(
            f"{field}={value!r} is not a time (ISO 8601, Unix seconds, or like -6h).", field=field
        ) from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    if not EARLIEST <= parsed < LATEST:
        raise InvalidInput(f"{field}={value!r} is outside the years 1970 to 9000.", field=field)
    return parsed


def _parse(text: str, now: datetime) -> datetime:
    relative = _RELATIVE.fullmatch(text)
    if relative:
        amount, unit = relative.groups()
        return now - timedelta(**{_UNITS[unit]: int(amount)})
    try:
        return datetime.fromtimestamp(float(text), UTC)
    except ValueError:
        pass  # not a number: try ISO 8601 next
    return datetime.fromisoformat(text)


def resolve_range(
    *, preset: str | None, start: str | None = None, end: str | None = None
) -> tuple[datetime, datetime, str]:
    """(start, end, label) from a preset name or a custom from/to pair. Unknown presets → 1h."""
    now = timezone.now()
    if start:
        start_at = parse_time(start, "from", now=now)
        end_at = parse_time(end, "to", now=now) if end else now
        if start_at >= end_at:
            raise InvalidInput("from must be before to.", field="from")
        return start_at, end_at, "custom"
    label = preset if preset in RANGE_PRESETS else "1h"
    return now - RANGE_PRESETS[label], now, label
