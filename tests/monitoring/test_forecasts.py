"""Forecasts from real stored series: a rising line reaches its limit on time; flat and falling never do."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from monitoring import storage
from monitoring.selectors.forecasts import forecast_series
from monitoring.services.rollups import rollups_run

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("clean_samples")]

NOW = datetime(2026, 4, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def _write_line(*, start_value: float, per_day: float, days: int = 7, noise: float = 0.0) -> int:
    """One sample a minute over the last `days` days, on value = start_value + per_day * t."""
    (series_id,) = storage.series_resolve(target_id=None, specs=[storage.SeriesSpec(metric="disk_used", labels={})])
    rows = []
    for minute in range(days * 24 * 60):
        t = minute / (24 * 60)
        wobble = noise if (minute // 60) % 2 else -noise  # hour by hour, so hourly points keep it
        rows.append((series_id, NOW - days * DAY + timedelta(minutes=minute), start_value + per_day * t + wobble))
    storage.samples_write(rows)
    rollups_run(now=NOW)
    return series_id


def test_a_rising_line_reaches_the_limit_when_the_line_says():
    # 10 a week ago, 2 per day: 24 now, so 40 is 8 days away.
    series_id = _write_line(start_value=10.0, per_day=2.0)

    forecast = forecast_series(series_id=series_id, limit=40.0, now=NOW)

    assert forecast is not None
    assert forecast.slope_per_day == pytest.approx(2.0, rel=1e-3)
    assert forecast.days_to_limit == pytest.approx(8.0, abs=0.01)
    assert abs(forecast.reaches_at - (NOW + 8 * DAY)) < timedelta(minutes=15)
    assert forecast.r_squared == pytest.approx(1.0, abs=1e-6)
    assert forecast.current == pytest.approx(24.0, abs=0.1)
    assert forecast.limit == 40.0
    assert 160 <= forecast.points <= 168  # hourly points over a week


def test_noise_lowers_r_squared_but_not_the_trend():
    series_id = _write_line(start_value=10.0, per_day=2.0, noise=3.0)

    forecast = forecast_series(series_id=series_id, limit=40.0, now=NOW)

    assert forecast.r_squared < 0.8
    assert forecast.slope_per_day == pytest.approx(2.0, rel=0.02)
    assert forecast.days_to_limit == pytest.approx(8.0, abs=0.2)


def test_a_line_already_past_the_limit_is_there_now():
    series_id = _write_line(start_value=10.0, per_day=2.0)

    forecast = forecast_series(series_id=series_id, limit=20.0, now=NOW)

    assert forecast.days_to_limit == 0.0
    assert forecast.reaches_at == NOW


@pytest.mark.parametrize("per_day", [0.0, -1.5])
def test_flat_or_falling_lines_never_reach_the_limit(per_day):
    series_id = _write_line(start_value=50.0, per_day=per_day)

    forecast = forecast_series(series_id=series_id, limit=80.0, now=NOW)

    assert forecast is not None
    assert forecast.days_to_limit is None and forecast.reaches_at is None
    assert forecast.slope_per_day == pytest.approx(per_day, abs=1e-9 if per_day == 0 else 1e-3)


def test_fewer_than_three_points_give_no_forecast():
    (series_id,) = storage.series_resolve(target_id=None, specs=[storage.SeriesSpec(metric="sparse", labels={})])
    storage.samples_write([(series_id, NOW - 3 * DAY, 1.0), (series_id, NOW - DAY, 2.0)])
    rollups_run(now=NOW)

    assert forecast_series(series_id=series_id, limit=10.0, now=NOW) is None
    assert forecast_series(series_id=series_id + 1000, limit=10.0, now=NOW) is None
