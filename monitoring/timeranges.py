"""Time ranges shared by pages and the API: presets and parsing of user-given times."""

from __future__ import annotations

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


def parse_time(value: str, field: str, *, now: datetime | None = None) -> datetime:
    """ISO 8601, Unix seconds, "now", or relative like "-6h" / "-30d"."""
    text = value.strip()
    now = now or timezone.now()
    if text == "now":
        return now
    if len(text) > 2 and text[0] == "-" and text[-1] in _UNITS and text[1:-1].isdigit():
        return now - timedelta(**{_UNITS[text[-1]]: int(text[1:-1])})
    try:
        return datetime.fromtimestamp(float(text), UTC)
    except (ValueError, OverflowError, OSError):
        pass  # not a number: try ISO 8601 next
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise InvalidInput(
            f"{field}={value!r} is not a time (ISO 8601, Unix seconds, or like -6h).", field=field
        ) from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


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
