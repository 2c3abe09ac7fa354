"""Human formats: sizes in binary units, durations in whole units, numbers without a trailing .0."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from core.humanize import ago, duration, number, percent, quantity, size


@pytest.mark.parametrize(
    ("value", "text"),
    [(2147483648.0, "2 GiB"), (64 * 1024**2, "64 MiB"), (1536, "1.5 KiB"), (512, "512 B"), (0, "0 B")],
)
def test_size_uses_binary_units(value, text):
    assert size(value) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(30, "30 s"), (0.25, "0.25 s"), (600, "10 min"), (90, "1 min 30 s"), (3600, "1 h"), (5400, "1 h 30 min"),
     (86400 * 2 + 7200 + 59, "2 d 2 h")],
)  # fmt: skip
def test_duration_uses_at_most_two_whole_units(seconds, text):
    assert duration(seconds) == text


@pytest.mark.parametrize(("value", "text"), [(80.0, "80"), (0.1, "0.1"), (1000000.0, "1,000,000"), (2.5, "2.5")])
def test_number_drops_a_trailing_zero(value, text):
    assert number(value) == text


def test_quantity_picks_the_format_from_the_unit():
    assert quantity(2147483648.0, "bytes") == "2 GiB"
    assert quantity(300.0, "s") == "5 min"
    assert quantity(95.0, "%") == percent(95.0) == "95 %"
    assert quantity(0.1, "/s") == "0.1/s"
    assert quantity(100.0) == "100"
    assert quantity(None, "bytes") == "no data"


def test_ago_says_just_now_instead_of_zero_minutes():
    now = timezone.now()
    assert ago(now - timedelta(seconds=3), now=now) == "just now"
    assert ago(now - timedelta(seconds=45), now=now) == "45 s ago"
    assert ago(now - timedelta(minutes=3, seconds=42), now=now) == "3 min ago"
    assert ago(now - timedelta(hours=2, minutes=5, seconds=9), now=now) == "2 h 5 min ago"
    assert ago(now + timedelta(minutes=5), now=now) == "in 5 min"
    assert ago(None) == "never"
