"""PromQL functions, as Prometheus 2.42's promql/functions.go computes them (our own code)."""

from __future__ import annotations

import itertools
import math
import re

import numpy as np

from monitoring.promql.errors import PromQLError

# Functions whose result keeps the metric name; every other one drops it.
_KEEPS_NAME = {"last_over_time", "label_replace", "vector", "time", "scalar"}


def divide(lhs: float, rhs: float) -> float:
    if rhs == 0:
        if lhs == 0 or math.isnan(lhs):
            return math.nan
        return math.copysign(math.inf, lhs) * math.copysign(1.0, rhs)
    return lhs / rhs


def go_mod(lhs: float, rhs: float) -> float:
    if rhs == 0 or math.isinf(lhs) or math.isnan(lhs) or math.isnan(rhs):
        return math.nan
    return math.fmod(lhs, rhs)


def go_pow(lhs: float, rhs: float) -> float:
    try:
        return math.pow(lhs, rhs)
    except (OverflowError, ValueError):
        if lhs == 0 and rhs < 0:
            return math.inf
        if math.isnan(lhs) or math.isnan(rhs):
            return math.nan
        try:
            return float(lhs**rhs) if not isinstance(lhs**rhs, complex) else math.nan
        except OverflowError:
            return math.inf


def quantile(q: float, values: list[float]) -> float:
    if not values or math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    ordered = sorted(values)
    n = float(len(ordered))
    rank = q * (n - 1)
    lower = max(0.0, math.floor(rank))
    upper = min(n - 1, lower + 1)
    weight = rank - math.floor(rank)
    return ordered[int(lower)] * (1 - weight) + ordered[int(upper)] * weight


def _kahan_inc(inc: float, total: float, c: float) -> tuple[float, float]:
    t = total + inc
    if abs(total) >= abs(inc):
        c += (total - t) + inc
    else:
        c += (inc - t) + total
    return t, c


# -- functions over ranges --------------------------------------------------------------------------
def counter_increase(values: list[float]) -> float:
    """Last minus first, plus the value before each reset (a decrease), added in order."""
    result = values[-1] - values[0]
    last = 0.0
    for v in values:
        if v < last:
            result += last
        last = v
    return result


def _extrapolated(matrix, t: int, *, counter: bool, rate: bool) -> list:
    out = []
    range_start = t - matrix.range_ms - matrix.offset_ms
    range_end = t - matrix.offset_ms
    for series in matrix.series:
        values = series.values.tolist()
        stamps = series.stamps.tolist()
        if len(values) < 2:
            continue
        result = counter_increase(values) if counter else values[-1] - values[0]
        sampled = (stamps[-1] - stamps[0]) / 1000
        average = sampled / (len(values) - 1)
        to_start = (stamps[0] - range_start) / 1000
        to_end = (range_end - stamps[-1]) / 1000
        if counter and result > 0 and values[0] >= 0:
            to_zero = sampled * (values[0] / result)
            if to_zero < to_start:
                to_start = to_zero
        threshold = average * 1.1
        interval = sampled
        interval += to_start if to_start < threshold else average / 2
        interval += to_end if to_end < threshold else average / 2
        result = result * (interval / sampled)
        if rate:
            result = result / (matrix.range_ms / 1000)
        out.append((_drop(series.labels), result))
    return out


def _instant_value(matrix, *, rate: bool) -> list:
    out = []
    for series in matrix.series:
        if len(series.values) < 2:
            continue
        last, previous = float(series.values[-1]), float(series.values[-2])
        interval = int(series.stamps[-1] - series.stamps[-2])
        result = last if rate and last < previous else last - previous
        if interval == 0:
            continue
        if rate:
            result /= interval / 1000
        out.append((_drop(series.labels), result))
    return out


def _linear_regression(stamps: list[int], values: list[float], intercept_time: int) -> tuple[float, float]:
    """(slope per second, value at intercept_time) of the least-squares line, compensated sums."""
    if all(v == values[0] for v in values):
        return (math.nan, math.nan) if math.isinf(values[0]) else (0.0, values[0])
    n = sum_x = c_x = sum_y = c_y = sum_xy = c_xy = sum_x2 = c_x2 = 0.0
    for stamp, v in zip(stamps, values, strict=True):
        n += 1.0
        x = (stamp - intercept_time) / 1e3
        sum_x, c_x = _kahan_inc(x, sum_x, c_x)
        sum_y, c_y = _kahan_inc(v, sum_y, c_y)
        sum_xy, c_xy = _kahan_inc(x * v, sum_xy, c_xy)
        sum_x2, c_x2 = _kahan_inc(x * x, sum_x2, c_x2)
    sum_x, sum_y, sum_xy, sum_x2 = sum_x + c_x, sum_y + c_y, sum_xy + c_xy, sum_x2 + c_x2
    cov_xy = sum_xy - sum_x * sum_y / n
    var_x = sum_x2 - sum_x * sum_x / n
    slope = cov_xy / var_x
    return slope, sum_y / n - slope * sum_x / n


def _deriv(matrix) -> list:
    out = []
    for series in matrix.series:
        if len(series.values) < 2:
            continue
        stamps = series.stamps.tolist()
        slope, _ = _linear_regression(stamps, series.values.tolist(), stamps[0])
        out.append((_drop(series.labels), slope))
    return out


def _predict_linear(matrix, seconds: float, t: int) -> list:
    out = []
    for series in matrix.series:
        if len(series.values) < 2:
            continue
        slope, intercept = _linear_regression(series.stamps.tolist(), series.values.tolist(), t)
        out.append((_drop(series.labels), slope * seconds + intercept))
    return out


def _with_label(labels: dict, name: str, value: str) -> dict:
    """The labels with one set, or removed when the value is empty (as Prometheus's label builder)."""
    changed = dict(labels)
    if value:
        changed[name] = value
    else:
        changed.pop(name, None)
    return changed


_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def _check_destination(dst: str, function: str) -> None:
    if not _LABEL_NAME.fullmatch(dst):
        raise PromQLError(f"invalid destination label name in {function}(): {dst}", error_type="execution")


def _label_join(vector: list, dst: str, separator: str, *sources: str) -> list:
    for source in sources:  # the sources first, then the destination, as 2.42 checks them
        if not _LABEL_NAME.fullmatch(source):
            raise PromQLError(f"invalid source label name in label_join(): {source}", error_type="execution")
    _check_destination(dst, "label_join")
    return [
        (_with_label(labels, dst, separator.join(labels.get(source, "") for source in sources)), value)
        for labels, value in vector
    ]


def plain_sum(values: list[float]) -> float:
    """sum(): added in order, as the aggregation does (sum_over_time is compensated)."""
    total = 0.0
    for v in values:
        total += v
    return total


def incremental_mean(values: list[float], *, compensated: bool) -> float:
    """An incremental mean (no overflow on large values), Kahan-compensated for avg_over_time as
    Prometheus does there, plain for the avg aggregation as it does there."""
    mean = c = count = 0.0
    for v in values:
        count += 1
        if math.isinf(mean):
            if math.isinf(v) and (mean > 0) == (v > 0):
                continue
            if not math.isinf(v) and not math.isnan(v):
                continue
        if compensated:
            mean, c = _kahan_inc(v / count - mean / count, mean, c)
        else:
            mean += v / count - mean / count
    return mean if math.isinf(mean) else mean + c


def _sum_over(values: list[float]) -> float:
    total = c = 0.0
    for v in values:
        total, c = _kahan_inc(v, total, c)
    return total if math.isinf(total) else total + c


def minimum(values: list[float]) -> float:
    result = values[0]
    for v in values:
        if v < result or math.isnan(result):
            result = v
    return result


def maximum(values: list[float]) -> float:
    result = values[0]
    for v in values:
        if v > result or math.isnan(result):
            result = v
    return result


def _changes(values: list[float]) -> float:
    changed = 0
    for previous, current in itertools.pairwise(values):
        if current != previous and not (math.isnan(current) and math.isnan(previous)):
            changed += 1
    return float(changed)


def _resets(values: list[float]) -> float:
    return float(sum(1 for previous, current in itertools.pairwise(values) if current < previous))


def variance_over(values: list[float]) -> float:
    """stdvar_over_time: a compensated running mean and sum of squared deviations."""
    count = mean = c_mean = aux = c_aux = 0.0
    for v in values:
        count += 1
        delta = v - (mean + c_mean)
        mean, c_mean = _kahan_inc(delta / count, mean, c_mean)
        aux, c_aux = _kahan_inc(delta * (v - (mean + c_mean)), aux, c_aux)
    return (aux + c_aux) / count


def variance(values: list[float]) -> float:
    """The stdvar aggregation: Welford's running mean and sum of squared deviations."""
    mean, total, count = values[0], 0.0, 1.0
    for v in values[1:]:
        count += 1
        delta = v - mean
        mean += delta / count
        total += delta * (v - mean)
    return total / count


_OVER_TIME = {
    "changes": _changes,
    "resets": _resets,
    "stdvar_over_time": variance_over,
    "stddev_over_time": lambda values: math.sqrt(variance_over(values)),
    "avg_over_time": lambda values: incremental_mean(values, compensated=True),
    "sum_over_time": _sum_over,
    "min_over_time": minimum,
    "max_over_time": maximum,
    "count_over_time": lambda values: float(len(values)),
    "last_over_time": lambda values: values[-1],
}


def _over_time(name: str, matrix) -> list:
    reduce = _OVER_TIME[name]
    labels = (lambda labels: labels) if name in _KEEPS_NAME else _drop
    return [(labels(s.labels), reduce(s.values.tolist())) for s in matrix.series if len(s.values)]


# -- functions over instant vectors ----------------------------------------------------------------
def _round(v: float, to_nearest: float) -> float:
    # Go's float arithmetic: 1/0 is +Inf, floor keeps NaN and ±Inf, 0/0 is NaN (round(x, 0) is NaN).
    inverse = divide(1.0, to_nearest)
    shifted = v * inverse + 0.5
    return divide(math.floor(shifted) if math.isfinite(shifted) else shifted, inverse)


def _clamp_min(v: float, low: float) -> float:
    if math.isnan(v) or math.isnan(low):
        return math.nan
    return max(low, v)


def _clamp_max(v: float, high: float) -> float:
    if math.isnan(v) or math.isnan(high):
        return math.nan
    return min(high, v)


def _histogram_quantile(q: float, vector: list) -> list:
    buckets: dict[tuple, tuple[dict, list[tuple[float, float]]]] = {}
    for labels, value in vector:
        le = labels.get("le")
        if le is None:
            continue
        try:
            bound = float(le)
        except ValueError:
            continue
        grouping = {k: v for k, v in labels.items() if k not in ("le", "__name__")}
        buckets.setdefault(tuple(sorted(grouping.items())), (grouping, []))[1].append((bound, value))
    out = []
    for grouping, points in buckets.values():
        out.append((grouping, bucket_quantile(q, points)))
    return out


def bucket_quantile(q: float, points: list[tuple[float, float]]) -> float:
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    if math.isnan(q):
        return math.nan
    points = sorted(points, key=lambda point: point[0])
    if not math.isinf(points[-1][0]) or points[-1][0] < 0:
        return math.nan
    # Coalesce buckets with the same upper bound, then make the counts monotonic.
    merged: list[list[float]] = []
    for bound, count in points:
        if merged and merged[-1][0] == bound:
            merged[-1][1] += count
        else:
            merged.append([bound, count])
    maximum = -math.inf
    for point in merged:
        if point[1] > maximum:
            maximum = point[1]
        elif point[1] < maximum:
            point[1] = maximum
    if len(merged) < 2:
        return math.nan
    observations = merged[-1][1]
    if observations == 0:
        return math.nan
    rank = q * observations
    b = 0
    while b < len(merged) - 1 and merged[b][1] < rank:
        b += 1
    if b == len(merged) - 1:
        return merged[-2][0]
    if b == 0 and merged[0][0] <= 0:
        return merged[0][0]
    bucket_start = 0.0
    bucket_end = merged[b][0]
    count = merged[b][1]
    if b > 0:
        bucket_start = merged[b - 1][0]
        count -= merged[b - 1][1]
        rank -= merged[b - 1][1]
    return bucket_start + (bucket_end - bucket_start) * (rank / count)


_TEMPLATE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


def _expand(template: str, match: re.Match) -> str:
    def group(m: re.Match) -> str:
        name = m.group(1) or m.group(2)
        try:
            value = match.group(int(name)) if name.isdigit() else match.group(name)
        except (IndexError, re.error):
            return ""
        return value or ""

    return _TEMPLATE.sub(group, template)


def _label_replace(vector: list, dst: str, replacement: str, src: str, regex: str) -> list:
    try:
        pattern = re.compile(f"^(?:{regex})$", re.DOTALL)
    except re.error:
        raise PromQLError(f"invalid regular expression in label_replace(): {regex}", error_type="execution") from None
    _check_destination(dst, "label_replace")
    out = []
    for labels, value in vector:
        match = pattern.match(labels.get(src, ""))
        out.append((labels if match is None else _with_label(labels, dst, _expand(replacement, match)), value))
    return out


def _drop(labels: dict) -> dict:
    if "__name__" not in labels:
        return labels
    return {k: v for k, v in labels.items() if k != "__name__"}


def _simple(vector: list, compute) -> list:
    return [(_drop(labels), compute(value)) for labels, value in vector]


SUPPORTED = {
    "rate",
    "irate",
    "increase",
    "delta",
    "idelta",
    "deriv",
    "predict_linear",
    "label_join",
    "sgn",
    *_OVER_TIME,
    "quantile_over_time",
    "abs",
    "ceil",
    "floor",
    "sqrt",
    "exp",
    "ln",
    "clamp",
    "clamp_min",
    "clamp_max",
    "round",
    "time",
    "vector",
    "scalar",
    "histogram_quantile",
    "label_replace",
}


def _ln(v: float) -> float:
    if v == 0:
        return -math.inf
    return math.log(v) if v > 0 else math.nan


def _sqrt(v: float) -> float:
    return math.sqrt(v) if v >= 0 or math.isnan(v) else math.nan


def _exp(v: float) -> float:
    try:
        return math.exp(v)
    except OverflowError:
        return math.inf


def _ceil_floor(function):
    return lambda v: float(function(v)) if math.isfinite(v) else v


def call(name: str, args: list, t: int):
    """The function's value at time t (milliseconds), given its evaluated arguments."""
    if name == "rate":
        return _extrapolated(args[0], t, counter=True, rate=True)
    if name == "increase":
        return _extrapolated(args[0], t, counter=True, rate=False)
    if name == "delta":
        return _extrapolated(args[0], t, counter=False, rate=False)
    if name == "irate":
        return _instant_value(args[0], rate=True)
    if name == "idelta":
        return _instant_value(args[0], rate=False)
    if name == "deriv":
        return _deriv(args[0])
    if name == "predict_linear":
        return _predict_linear(args[0], args[1], t)
    if name == "label_join":
        return _label_join(args[0], *args[1:])
    if name == "sgn":
        return _simple(args[0], lambda v: v if v == 0 or math.isnan(v) else math.copysign(1.0, v))
    if name in _OVER_TIME:
        return _over_time(name, args[0])
    if name == "quantile_over_time":
        q = args[0]
        return [(_drop(s.labels), quantile(q, s.values.tolist())) for s in args[1].series if len(s.values)]
    if name == "abs":
        return _simple(args[0], abs)
    if name == "ceil":
        return _simple(args[0], _ceil_floor(math.ceil))
    if name == "floor":
        return _simple(args[0], _ceil_floor(math.floor))
    if name == "sqrt":
        return _simple(args[0], _sqrt)
    if name == "exp":
        return _simple(args[0], _exp)
    if name == "ln":
        return _simple(args[0], _ln)
    if name == "clamp_min":
        return _simple(args[0], lambda v: _clamp_min(v, args[1]))
    if name == "clamp_max":
        return _simple(args[0], lambda v: _clamp_max(v, args[1]))
    if name == "clamp":
        low, high = args[1], args[2]
        if high < low:
            return []
        return _simple(args[0], lambda v: _clamp_max(_clamp_min(v, low), high))
    if name == "round":
        to_nearest = args[1] if len(args) > 1 else 1.0
        return _simple(args[0], lambda v: _round(v, to_nearest))
    if name == "time":
        return t / 1000
    if name == "vector":
        return [({}, args[0])]
    if name == "scalar":
        return args[0][0][1] if len(args[0]) == 1 else math.nan
    if name == "histogram_quantile":
        return _histogram_quantile(args[0], args[1])
    if name == "label_replace":
        return _label_replace(args[0], *args[1:])
    if name in _ADDED:
        return _ADDED[name](args, t)
    raise PromQLError(f"function {name!r} is not supported")


# -- functions added for Prometheus 2.42's full list (absent, absent_over_time and timestamp of a selector
# need the expression, not only its value: the engine computes those) ------------------------------------
def _date_seconds(v: float) -> int:
    """The Unix second Prometheus's date functions read a value as: Go's int64(v), truncated toward zero.
    For NaN, ±Inf and values past int64, Go on amd64 gives the smallest int64, whose date Go's calendar
    arithmetic (an unsigned count from its absolute zero year, which wraps) computes as that of 2^63 s."""
    return int(v) if math.isfinite(v) and abs(v) < 2**63 else 2**63


def _civil_date(seconds: int) -> tuple[int, int, int, int]:
    """(year, month, day, days since 1970-01-01) of a Unix time in UTC, for any int64 (proleptic Gregorian)."""
    days = seconds // 86_400
    z = days + 719_468
    era = z // 146_097
    day_of_era = z - era * 146_097
    year_of_era = (day_of_era - day_of_era // 1460 + day_of_era // 36_524 - day_of_era // 146_096) // 365
    day_of_year = day_of_era - (365 * year_of_era + year_of_era // 4 - year_of_era // 100)
    shifted_month = (5 * day_of_year + 2) // 153  # March is 0
    day = day_of_year - (153 * shifted_month + 2) // 5 + 1
    month = shifted_month + 3 if shifted_month < 10 else shifted_month - 9
    return year_of_era + era * 400 + (month <= 2), month, day, days


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


_MONTH_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _days_in_month(seconds: int) -> float:
    year, month, _, _ = _civil_date(seconds)
    return float(29 if month == 2 and _is_leap(year) else _MONTH_DAYS[month - 1])


def _day_of_year(seconds: int) -> float:
    year, month, day, _ = _civil_date(seconds)
    return float(sum(_MONTH_DAYS[: month - 1]) + (1 if month > 2 and _is_leap(year) else 0) + day)


_DATE = {
    "year": lambda s: float(_civil_date(s)[0]),
    "month": lambda s: float(_civil_date(s)[1]),
    "day_of_month": lambda s: float(_civil_date(s)[2]),
    "day_of_week": lambda s: float((_civil_date(s)[3] + 4) % 7),  # 1970-01-01 was a Thursday; Sunday is 0
    "day_of_year": _day_of_year,
    "days_in_month": _days_in_month,
    "hour": lambda s: float(s % 86_400 // 3600),
    "minute": lambda s: float(s % 3600 // 60),
}


def _date(name: str, args: list, t: int) -> list:
    compute = _DATE[name]
    if not args:  # without an argument: of the evaluation time, as vector(time())
        return [({}, compute(t // 1000))]
    return [(_drop(labels), compute(_date_seconds(value))) for labels, value in args[0]]


def _numpy_math(ufunc):
    """A math function with Go's answers outside its domain (NaN, ±Inf) instead of Python's exceptions."""

    def compute(v: float) -> float:
        with np.errstate(all="ignore"):
            return float(ufunc(v))

    return compute


_VECTOR_MATH = {
    "sin": _numpy_math(np.sin),
    "cos": _numpy_math(np.cos),
    "tan": _numpy_math(np.tan),
    "asin": _numpy_math(np.arcsin),
    "acos": _numpy_math(np.arccos),
    "atan": _numpy_math(np.arctan),
    "sinh": _numpy_math(np.sinh),
    "cosh": _numpy_math(np.cosh),
    "tanh": _numpy_math(np.tanh),
    "asinh": _numpy_math(np.arcsinh),
    "acosh": _numpy_math(np.arccosh),
    "atanh": _numpy_math(np.arctanh),
    "log2": _numpy_math(np.log2),
    "log10": _numpy_math(np.log10),
    "deg": lambda v: v * 180 / math.pi,
    "rad": lambda v: v * math.pi / 180,
}


def _sorted_by_value(vector: list, *, descending: bool) -> list:
    """sort and sort_desc: by value, NaN last either way; labels kept (the metric name too)."""
    numbers = [sample for sample in vector if not math.isnan(sample[1])]
    nans = [sample for sample in vector if math.isnan(sample[1])]
    return sorted(numbers, key=lambda sample: sample[1], reverse=descending) + nans


def _holt_winters(matrix, smoothing: float, trend: float) -> list:
    out = []
    for series in matrix.series:
        # Checked per series with samples, as Prometheus does: no samples, no error.
        if smoothing <= 0 or smoothing >= 1:
            raise PromQLError(
                f"invalid smoothing factor. Expected: 0 < sf < 1, got: {smoothing:f}", error_type="execution"
            )
        if trend <= 0 or trend >= 1:
            raise PromQLError(f"invalid trend factor. Expected: 0 < tf < 1, got: {trend:f}", error_type="execution")
        values = series.values.tolist()
        if len(values) < 2:
            continue
        previous, smoothed, slope = 0.0, values[0], values[1] - values[0]
        for i in range(1, len(values)):
            if i > 1:  # the first trend is the first difference
                slope = trend * (smoothed - previous) + (1 - trend) * slope
            previous, smoothed = smoothed, smoothing * values[i] + (1 - smoothing) * (smoothed + slope)
        out.append((_drop(series.labels), smoothed))
    return out


_ADDED = {
    **{name: (lambda args, t, name=name: _date(name, args, t)) for name in _DATE},
    **{name: (lambda args, t, f=f: _simple(args[0], f)) for name, f in _VECTOR_MATH.items()},
    "pi": lambda args, t: math.pi,
    "sort": lambda args, t: _sorted_by_value(args[0], descending=False),
    "sort_desc": lambda args, t: _sorted_by_value(args[0], descending=True),
    "present_over_time": lambda args, t: [(_drop(s.labels), 1.0) for s in args[0].series if len(s.values)],
    "double_exponential_smoothing": lambda args, t: _holt_winters(*args),
}
SUPPORTED.update(_ADDED, {"absent", "absent_over_time", "timestamp"})
# Native histograms (Prometheus 2.40+, experimental in 2.42) are not stored: these answer a 400.
NATIVE_HISTOGRAM_FUNCTIONS = {"histogram_count", "histogram_sum", "histogram_fraction"}
