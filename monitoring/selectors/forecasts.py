"""Capacity forecasts: when will a series reach a limit if its recent linear trend continues.

A least-squares line through roughly hourly averages of the window. Hourly points smooth out
the minute-to-minute noise that would otherwise dominate the fit, and keep the work tiny (a week
is 168 points); the arithmetic is a handful of sums, so it is plain Python.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone

from monitoring.selectors.series import series_query

DAY = timedelta(days=1)
_POINT_STEP = timedelta(hours=1)
_MIN_QUERY_POINTS = 48  # short windows still get enough points for a trend
_MIN_FIT_POINTS = 3
_MAX_HORIZON_DAYS = 100 * 365  # a date further out than this is no forecast worth a timestamp


@dataclass(frozen=True)
class Forecast:
    current: float  # the newest point's average
    limit: float
    slope_per_day: float
    days_to_limit: float | None  # None when the trend is flat or falling; 0 when already there
    reaches_at: datetime | None
    r_squared: float  # how well a line explains the points (1 = perfectly)
    points: int


def forecast_series(
    *, series_id: int, window: timedelta = timedelta(days=7), limit: float, now: datetime | None = None
) -> Forecast | None:
    """Fit a line to the series over [now - window, now); None with fewer than three points."""
    now = now or timezone.now()
    start = now - window
    max_points = max(_MIN_QUERY_POINTS, math.ceil(window / _POINT_STEP))
    result = series_query(series_ids=[series_id], start=start, end=now, max_points=max_points, now=now)
    points = result.series[series_id]
    if len(points) < _MIN_FIT_POINTS:
        return None
    step = timedelta(seconds=result.step_seconds)
    # Each point averages its step; place it at the middle of the part of the step inside the
    # window (the first and last steps can be cut by start and now).
    xs = []
    for point in points:
        low, high = max(point.ts, start), min(point.ts + step, now)
        xs.append(((low - start) + (high - low) / 2) / DAY)
    ys = [point.avg for point in points]
    slope, intercept, r_squared = least_squares(xs, ys)

    days_to_limit = reaches_at = None
    if slope > 0:
        fitted_now = intercept + slope * ((now - start) / DAY)
        days_to_limit = max(0.0, (limit - fitted_now) / slope)
        if days_to_limit <= _MAX_HORIZON_DAYS:
            reaches_at = now + timedelta(days=days_to_limit)
    return Forecast(
        current=ys[-1],
        limit=limit,
        slope_per_day=slope,
        days_to_limit=days_to_limit,
        reaches_at=reaches_at,
        r_squared=r_squared,
        points=len(points),
    )


def least_squares(xs: list[float], ys: list[float]) -> tuple[float, float, float]:
    """slope, intercept and r² of the ordinary least-squares line y = intercept + slope * x (also fits the
    optimizer's daily table sizes)."""
    n = len(xs)
    mean_x = sum(xs) / n
    mean_y = sum(ys) / n
    sxx = sum((x - mean_x) ** 2 for x in xs)
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True))
    slope = sxy / sxx if sxx else 0.0
    intercept = mean_y - slope * mean_x
    ss_total = sum((y - mean_y) ** 2 for y in ys)
    ss_residual = sum((y - (intercept + slope * x)) ** 2 for x, y in zip(xs, ys, strict=True))
    # A constant series is fitted perfectly by a flat line.
    r_squared = 1.0 - ss_residual / ss_total if ss_total else 1.0
    return slope, intercept, r_squared
