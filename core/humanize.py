"""Numbers, sizes, durations and moments as people read them: "2 GiB", "10 min", "85 %", "just now".

Every page that shows a measured value goes through `quantity(value, unit)`, so a threshold of
2147483648.0 bytes reads "2 GiB" everywhere. Units are the ones series carry ("bytes", "s", "%",
"/s", or none).
"""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone

BYTE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
# (seconds in the unit, its symbol), largest first.
DURATION_UNITS = ((86400, "d"), (3600, "h"), (60, "min"), (1, "s"))
JUST_NOW_SECONDS = 10


def number(value: float) -> str:
    """A plain number without a trailing ".0": 3 significant decimals at most, thousands separated."""
    if value == int(value) and abs(value) < 1e15:
        return f"{int(value):,}"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}" if abs(value) < 1 else f"{value:.4g}"


def size(value: float) -> str:
    """Bytes in binary units: 2147483648 → "2 GiB", 1536 → "1.5 KiB"."""
    scaled, unit = float(value), BYTE_UNITS[0]
    for unit in BYTE_UNITS:
        if abs(scaled) < 1024 or unit == BYTE_UNITS[-1]:
            break
        scaled /= 1024
    return f"{_trimmed(scaled)} {unit}"


def duration(seconds: float) -> str:
    """A duration in its largest whole units, at most two: 90 → "1 min 30 s", 3600 → "1 h", 0.25 → "0.25 s"."""
    if abs(seconds) < 60:
        return f"{_trimmed(seconds)} s"
    sign, rest = ("-" if seconds < 0 else ""), round(abs(seconds))
    parts = []
    for length, symbol in DURATION_UNITS:
        whole, rest = divmod(rest, length)
        if whole:
            parts.append(f"{whole} {symbol}")
        if len(parts) == 2 or (parts and not rest):
            break
    return sign + " ".join(parts)


def percent(value: float) -> str:
    return f"{_trimmed(value)} %"


def quantity(value: float | None, unit: str = "") -> str:
    """A value in its series' unit; None is "no data"."""
    if value is None:
        return "no data"
    if unit == "bytes":
        return size(value)
    if unit == "s":
        return duration(value)
    if unit == "%":
        return percent(value)
    if unit.startswith("/"):
        return f"{number(value)}{unit}"
    return f"{number(value)} {unit}".rstrip()


def ago(moment: datetime | None, *, now: datetime | None = None) -> str:
    """How long ago: "just now", "45 s ago", "3 min ago", "2 h 5 min ago"; "in 5 min" for the future."""
    if moment is None:
        return "never"
    elapsed = ((now or timezone.now()) - moment).total_seconds()
    if abs(elapsed) < JUST_NOW_SECONDS:
        return "just now"
    seconds = round(abs(elapsed))
    if seconds >= 60:
        seconds -= seconds % 60  # "12 min ago", not "12 min 24 s ago": seconds matter only in the first minute
    text = duration(seconds)
    return f"{text} ago" if elapsed > 0 else f"in {text}"


def _trimmed(value: float) -> str:
    """At most two decimals, none when whole: 2.0 → "2", 1.5 → "1.5", 0.125 → "0.13"."""
    return f"{value:.2f}".rstrip("0").rstrip(".") if value != int(value) else f"{int(value)}"
