"""Evaluating a PromQL node at every step of a range query at once, with numpy: the Evaluator's fast
path (monitoring.promql.engine), beside its step-by-step evaluation.

A node's value at every step is either a scalar (a float64 array, one value per step) or a list of
StepSeries (an instant vector: each series' labels, its value at every step and whether it is present
there). Each function here does the same float operations, in the same order, that the step-by-step
code does at each step, so answers are bit-identical: sequential reductions over a window (the
compensated sums of *_over_time) run as one numpy operation per sample position in the window, for
all steps together. A node this module does not take answers None and the Evaluator evaluates it step
by step, reading any of its children evaluated here one step at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import promql_parser as pp

from monitoring.promql import functions
from monitoring.promql.errors import PromQLError

LOOKBACK_MS = 5 * 60 * 1000
SAME_LABELSET = "vector cannot contain metrics with the same labelset"

Labels = dict[str, str]


@dataclass
class StepSeries:
    """One series of an instant vector at every step: its value there, and whether it is present."""

    labels: Labels
    values: np.ndarray  # float64, one per step (meaningless where not present)
    present: np.ndarray  # bool, one per step
    _lists: tuple[list, list] | None = field(default=None, repr=False)

    def lists(self) -> tuple[list, list]:
        """(values, present) as Python lists, for reading one step at a time."""
        if self._lists is None:
            self._lists = (self.values.tolist(), self.present.tolist())
        return self._lists


class Points(Sequence):
    """A series' points as two arrays, read as the [(t ms, value)] lists of the step-by-step path are:
    a long range's answer is encoded from the arrays (monitoring.promql.http) without a tuple per point."""

    __hash__ = None

    def __init__(self, stamps: np.ndarray, values: np.ndarray) -> None:
        self.stamps = stamps  # int64 milliseconds
        self.values = values  # float64

    def __len__(self) -> int:
        return len(self.stamps)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return list(self)[index]
        return int(self.stamps[index]), float(self.values[index])

    def __iter__(self):
        return zip(self.stamps.tolist(), self.values.tolist(), strict=True)

    def __eq__(self, other) -> bool:
        return list(self) == list(other) if isinstance(other, Sequence) else NotImplemented

    def __repr__(self) -> str:
        return f"Points({list(self)!r})"


def at_step(value, index: int):
    """The value the step-by-step evaluation has at one step: a float, or a vector."""
    if isinstance(value, np.ndarray):
        return float(value[index])
    out = []
    for series in value:
        values, present = series.lists()
        if present[index]:
            out.append((series.labels, values[index]))
    return out


def range_result(value, times: np.ndarray) -> list[tuple[Labels, list]]:
    """[(labels, [(t ms, value)])] sorted by labels, as evaluate_range answers, from a node's value."""
    if isinstance(value, np.ndarray):
        return [({}, Points(times, value))]
    by_key: dict[tuple, list[StepSeries]] = {}
    for series in value:
        by_key.setdefault(_key(series.labels), []).append(series)
    out = []
    for key in sorted(by_key):
        rows = by_key[key]
        present = rows[0].present
        values = rows[0].values
        for other in rows[1:]:  # the same labels twice: one series, unless both are there at one step
            if np.any(present & other.present):
                raise PromQLError(SAME_LABELSET)
            values = np.where(other.present, other.values, values)
            present = present | other.present
        if present.any():
            out.append((rows[0].labels, Points(times[present], values[present])))
    return out


def _key(labels: Labels) -> tuple:
    return tuple(sorted(labels.items()))


def _drop_name(labels: Labels) -> Labels:
    if "__name__" not in labels:
        return labels
    return {k: v for k, v in labels.items() if k != "__name__"}


def _ms(delta) -> int:
    return 0 if delta is None else round(delta.total_seconds() * 1000)


def _unwrap(node):
    while isinstance(node, pp.ParenExpr):
        node = node.expr
    return node


def _plain(vs) -> bool:
    """A selector this module reads: no @ modifier (each step reads at its own time)."""
    return getattr(vs, "at", None) is None


def evaluate(evaluator, node):
    """The node's value at every step of the evaluator's range, or None to evaluate it step by step."""
    if isinstance(node, pp.NumberLiteral):
        return np.full(len(evaluator.times), float(node.val))
    if isinstance(node, pp.VectorSelector):
        return _selector(evaluator, node) if _plain(node) else None
    if isinstance(node, pp.Call):
        return _call(evaluator, node)
    if isinstance(node, pp.AggregateExpr):
        return _aggregate(evaluator, node)
    if isinstance(node, pp.BinaryExpr):
        return _binary(evaluator, node)
    if isinstance(node, pp.UnaryExpr):
        value = evaluator.steps(node.expr)
        if value is None or isinstance(value, np.ndarray):
            return None if value is None else -value
        return [StepSeries(_drop_name(s.labels), -s.values, s.present) for s in value]
    return None


# -- selectors ------------------------------------------------------------------------------------
def _selector(evaluator, vs) -> list[StepSeries]:
    at = evaluator.times - _ms(vs.offset)
    out = []
    for series in evaluator.selector_data(vs, LOOKBACK_MS):
        index = np.searchsorted(series.stamps, at, side="right") - 1
        clipped = np.maximum(index, 0)
        seen = (index >= 0) & (series.stamps[clipped] >= at - LOOKBACK_MS)
        out.append(StepSeries(series.labels, series.values[clipped], seen))
    return out


@dataclass
class _Windows:
    """A range selector's window of one series at every step: samples lo[i]:hi[i]."""

    labels: Labels
    stamps: np.ndarray
    values: np.ndarray
    lo: np.ndarray
    hi: np.ndarray

    @property
    def count(self) -> np.ndarray:
        return self.hi - self.lo

    def first(self) -> np.ndarray:  # index of each window's first sample (clipped where empty)
        return np.minimum(self.lo, len(self.stamps) - 1)

    def last(self) -> np.ndarray:  # index of each window's last sample (clipped where empty)
        return np.maximum(self.hi - 1, 0)


def _windows(evaluator, node) -> tuple[list[_Windows], int, int] | None:
    node = _unwrap(node)
    if not isinstance(node, pp.MatrixSelector) or not _plain(node.vector_selector):
        return None
    vs = node.vector_selector
    range_ms, offset = _ms(node.range), _ms(vs.offset)
    end = evaluator.times - offset
    out = [
        _Windows(
            series.labels,
            series.stamps,
            series.values,
            np.searchsorted(series.stamps, end - range_ms, side="left"),
            np.searchsorted(series.stamps, end, side="right"),
        )
        for series in evaluator.selector_data(vs, range_ms)
    ]
    return out, range_ms, offset


# -- functions --------------------------------------------------------------------------------------
_INSTANT = {"abs", "ceil", "floor", "sqrt", "clamp", "clamp_min", "clamp_max"}


def _call(evaluator, node):
    name = node.func.name
    if name == "time":
        return evaluator.times / 1000
    if name in ("rate", "increase", "delta"):
        found = _windows(evaluator, node.args[0])
        return None if found is None else _extrapolated(evaluator, *found, counter=name != "delta", rate=name == "rate")
    if name in ("irate", "idelta"):
        found = _windows(evaluator, node.args[0])
        return None if found is None else _instant_value(found[0], rate=name == "irate")
    if name in _OVER_TIME:
        found = _windows(evaluator, node.args[0])
        if found is None:
            return None
        keep_name = name == "last_over_time"
        return [
            StepSeries(w.labels if keep_name else _drop_name(w.labels), _OVER_TIME[name](w), w.count >= 1)
            for w in found[0]
        ]
    if name in ("deriv", "predict_linear"):
        found = _windows(evaluator, node.args[0])
        seconds = evaluator.steps(node.args[1]) if name == "predict_linear" else None
        if found is None or (name == "predict_linear" and not isinstance(seconds, np.ndarray)):
            return None
        out = []
        with np.errstate(all="ignore"):
            for w in found[0]:
                at = w.stamps[w.first()] if seconds is None else evaluator.times
                slope, intercept = _linear_regression(w, at)
                value = slope if seconds is None else slope * seconds + intercept
                out.append(StepSeries(_drop_name(w.labels), value, w.count >= 2))
        return out
    if name == "histogram_quantile":
        q, vector = evaluator.steps(node.args[0]), evaluator.steps(node.args[1])
        if not isinstance(q, np.ndarray) or not isinstance(vector, list):
            return None
        return _histogram_quantile(q, vector)
    if name in _INSTANT:
        args = [evaluator.steps(arg) for arg in node.args]
        if any(arg is None for arg in args) or not isinstance(args[0], list):
            return None
        return _instant_function(name, args)
    return None


def _extrapolated(evaluator, found: list[_Windows], range_ms: int, offset: int, *, counter: bool, rate: bool):
    """rate, increase and delta at every step: functions._extrapolated's arithmetic on arrays."""
    range_start = evaluator.times - range_ms - offset
    range_end = evaluator.times - offset
    out = []
    with np.errstate(all="ignore"):
        for w in found:
            count = w.count
            present = count >= 2
            first_i, last_i = w.first(), w.last()
            first, last = w.values[first_i], w.values[last_i]
            result = last - first
            if counter:
                # Windows where the counter went down (or starts negative) add up their resets sample
                # by sample, in order, exactly as the step-by-step code does; they are few.
                drops = np.concatenate(([0], np.cumsum(w.values[1:] < w.values[:-1])))
                reset = present & ((drops[last_i] > drops[first_i]) | (first < 0))
                for i in np.flatnonzero(reset):
                    result[i] = functions.counter_increase(w.values[w.lo[i] : w.hi[i]].tolist())
            sampled = (w.stamps[last_i] - w.stamps[first_i]) / 1000
            average = sampled / (count - 1)
            to_start = (w.stamps[first_i] - range_start) / 1000
            to_end = (range_end - w.stamps[last_i]) / 1000
            if counter:
                to_zero = sampled * (first / result)
                to_start = np.where((result > 0) & (first >= 0) & (to_zero < to_start), to_zero, to_start)
            threshold = average * 1.1
            interval = sampled + np.where(to_start < threshold, to_start, average / 2)
            interval = interval + np.where(to_end < threshold, to_end, average / 2)
            result = result * (interval / sampled)
            if rate:
                result = result / (range_ms / 1000)
            out.append(StepSeries(_drop_name(w.labels), result, present))
    return out


def _instant_value(found: list[_Windows], *, rate: bool):
    """irate and idelta at every step, from each window's last two samples."""
    out = []
    with np.errstate(all="ignore"):
        for w in found:
            last_i = w.last()
            previous_i = np.maximum(last_i - 1, 0)
            last, previous = w.values[last_i], w.values[previous_i]
            interval = w.stamps[last_i] - w.stamps[previous_i]
            result = np.where(last < previous, last, last - previous) if rate else last - previous
            if rate:
                result = result / (interval / 1000)
            out.append(StepSeries(_drop_name(w.labels), result, (w.count >= 2) & (interval != 0)))
    return out


def _positions(w: _Windows):
    """(k, where, value) for each position k of the windows: which windows reach it, and their k-th sample."""
    count = w.count
    longest = int(count.max()) if len(count) else 0
    top = len(w.values) - 1
    for k in range(longest):
        yield k, k < count, w.values[np.minimum(w.lo + k, top)]


def _kahan_inc(inc, total, c, where):
    t = total + inc
    c_new = c + np.where(np.abs(total) >= np.abs(inc), (total - t) + inc, (inc - t) + total)
    return np.where(where, t, total), np.where(where, c_new, c)


def _sum_over(w: _Windows) -> np.ndarray:
    total = c = np.zeros(len(w.lo))
    for _, where, v in _positions(w):
        total, c = _kahan_inc(v, total, c, where)
    return np.where(np.isinf(total), total, total + c)


def _avg_over(w: _Windows) -> np.ndarray:
    mean = c = count = np.zeros(len(w.lo))
    for _, where, v in _positions(w):
        count = count + where  # one more where the window reaches this sample
        skip = np.isinf(mean) & ((np.isinf(v) & ((mean > 0) == (v > 0))) | (~np.isinf(v) & ~np.isnan(v)))
        mean, c = _kahan_inc(v / count - mean / count, mean, c, where & ~skip)
    return np.where(np.isinf(mean), mean, mean + c)


def _extreme(w: _Windows, *, lowest: bool) -> np.ndarray:
    result = w.values[w.first()]
    for _, where, v in _positions(w):
        better = (v < result) if lowest else (v > result)
        result = np.where(where & (better | np.isnan(result)), v, result)
    return result


def _variance_over(w: _Windows) -> np.ndarray:
    count = mean = c_mean = aux = c_aux = np.zeros(len(w.lo))
    for _, where, v in _positions(w):
        count = count + where
        delta = v - (mean + c_mean)
        mean, c_mean = _kahan_inc(delta / count, mean, c_mean, where)
        aux, c_aux = _kahan_inc(delta * (v - (mean + c_mean)), aux, c_aux, where)
    return (aux + c_aux) / count


def _linear_regression(w: _Windows, intercept_time: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """functions._linear_regression of every window: (slope per second, value at intercept_time)."""
    first = w.values[w.first()]
    constant = np.ones(len(w.lo), dtype=bool)
    n = sum_x = c_x = sum_y = c_y = sum_xy = c_xy = sum_x2 = c_x2 = np.zeros(len(w.lo))
    top = len(w.stamps) - 1
    for k, where, v in _positions(w):
        constant &= ~where | (v == first)
        n = n + where
        x = (w.stamps[np.minimum(w.lo + k, top)] - intercept_time) / 1e3
        sum_x, c_x = _kahan_inc(x, sum_x, c_x, where)
        sum_y, c_y = _kahan_inc(v, sum_y, c_y, where)
        sum_xy, c_xy = _kahan_inc(x * v, sum_xy, c_xy, where)
        sum_x2, c_x2 = _kahan_inc(x * x, sum_x2, c_x2, where)
    sum_x, sum_y, sum_xy, sum_x2 = sum_x + c_x, sum_y + c_y, sum_xy + c_xy, sum_x2 + c_x2
    cov_xy = sum_xy - sum_x * sum_y / n
    var_x = sum_x2 - sum_x * sum_x / n
    slope = cov_xy / var_x
    intercept = sum_y / n - slope * sum_x / n
    infinite = np.isinf(first)
    slope = np.where(constant, np.where(infinite, np.nan, 0.0), slope)
    return slope, np.where(constant, np.where(infinite, np.nan, first), intercept)


def _pairs_counted(w: _Windows, changed: np.ndarray) -> np.ndarray:
    """How many consecutive pairs inside each window `changed` (per sample after the first) marks."""
    running = np.concatenate(([0], np.cumsum(changed)))  # running[j]: marked pairs up to sample j
    return (running[w.last()] - running[w.first()]).astype(np.float64)


def _changes(w: _Windows) -> np.ndarray:
    current, previous = w.values[1:], w.values[:-1]
    return _pairs_counted(w, (current != previous) & ~(np.isnan(current) & np.isnan(previous)))


def _resets(w: _Windows) -> np.ndarray:
    return _pairs_counted(w, w.values[1:] < w.values[:-1])


def _over_time_errstate(reduce):
    def reduced(w: _Windows) -> np.ndarray:
        with np.errstate(all="ignore"):
            return reduce(w)

    return reduced


_OVER_TIME = {
    name: _over_time_errstate(reduce)
    for name, reduce in {
        "sum_over_time": _sum_over,
        "avg_over_time": _avg_over,
        "min_over_time": lambda w: _extreme(w, lowest=True),
        "max_over_time": lambda w: _extreme(w, lowest=False),
        "count_over_time": lambda w: w.count.astype(np.float64),
        "last_over_time": lambda w: w.values[w.last()],
        "stdvar_over_time": _variance_over,
        "stddev_over_time": lambda w: np.sqrt(_variance_over(w)),
        "changes": _changes,
        "resets": _resets,
    }.items()
}


def _instant_function(name: str, args: list):
    vector = args[0]
    with np.errstate(all="ignore"):
        if name == "abs":
            compute = np.abs
        elif name in ("ceil", "floor"):
            # math.ceil/floor answer ints: a zero result is +0.0, where numpy keeps -0.0.
            rounding = np.ceil if name == "ceil" else np.floor
            compute = lambda v: rounding(v) + 0.0  # noqa: E731
        elif name == "sqrt":
            compute = np.sqrt
        elif name == "clamp_min":
            compute = lambda v: _clamp_min(v, args[1])  # noqa: E731
        elif name == "clamp_max":
            compute = lambda v: _clamp_max(v, args[1])  # noqa: E731
        else:  # clamp: nothing at the steps where max < min
            low, high = args[1], args[2]
            return [
                StepSeries(_drop_name(s.labels), _clamp_max(_clamp_min(s.values, low), high), s.present & ~(high < low))
                for s in vector
            ]
        return [StepSeries(_drop_name(s.labels), compute(s.values), s.present) for s in vector]


def _clamp_min(v: np.ndarray, low: np.ndarray) -> np.ndarray:
    return np.where(np.isnan(v) | np.isnan(low), np.nan, np.where(v > low, v, low))


def _clamp_max(v: np.ndarray, high: np.ndarray) -> np.ndarray:
    return np.where(np.isnan(v) | np.isnan(high), np.nan, np.where(v < high, v, high))


def _histogram_quantile(q: np.ndarray, vector: list[StepSeries]):
    """histogram_quantile at every step: functions.bucket_quantile on arrays at the steps where all of
    a histogram's buckets are there, and that function itself at the (rare) steps where some are not."""
    groups: dict[tuple, tuple[Labels, list[tuple[float, StepSeries]]]] = {}
    for series in vector:
        try:
            bound = float(series.labels["le"])
        except (KeyError, ValueError):
            continue
        grouping = {k: v for k, v in series.labels.items() if k not in ("le", "__name__")}
        groups.setdefault(_key(grouping), (grouping, []))[1].append((bound, series))
    out = []
    with np.errstate(all="ignore"):
        for grouping, rows in groups.values():
            rows.sort(key=lambda row: row[0])  # stable, as the step-by-step sort
            bounds = np.array([bound for bound, _ in rows])
            if len(np.unique(bounds)) < len(bounds):
                return None  # buckets to coalesce: step by step
            present = _any_present([series for _, series in rows], len(q))
            full = np.ones(len(q), dtype=bool)
            for _, series in rows:
                full &= series.present
            counts = np.array([series.values for _, series in rows])
            values = _bucket_quantiles(q, bounds, counts)
            for i in np.flatnonzero(present & ~full):
                points = [(bound, float(series.values[i])) for bound, series in rows if series.present[i]]
                values[i] = functions.bucket_quantile(float(q[i]), points)
            out.append(StepSeries(grouping, values, present))
    return out


def _bucket_quantiles(q: np.ndarray, bounds: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """functions.bucket_quantile at every step, for buckets (ascending, distinct) counts[bucket, step]."""
    steps = counts.shape[1]
    n = len(bounds)
    if n < 2 or not (np.isinf(bounds[-1]) and bounds[-1] > 0):
        result = np.full(steps, np.nan)
    else:
        counts = np.where(np.isnan(counts), counts, np.fmax.accumulate(counts, axis=0))  # monotonic, NaN kept
        observations = counts[-1]
        rank = q * observations
        reached = ~(counts[:-1] < rank)  # the first bucket whose count is not below the rank
        b = np.where(reached.any(axis=0), np.argmax(reached, axis=0), n - 1)
        columns = np.arange(steps)
        previous = np.maximum(b - 1, 0)
        bucket_start = np.where(b > 0, bounds[previous], 0.0)
        count = np.where(b > 0, counts[b, columns] - counts[previous, columns], counts[b, columns])
        rank = np.where(b > 0, rank - counts[previous, columns], rank)
        result = bucket_start + (bounds[b] - bucket_start) * (rank / count)
        result = np.where((b == 0) & (bounds[0] <= 0), bounds[0], result)
        result = np.where(b == n - 1, bounds[n - 2], result)
        result = np.where(observations == 0, np.nan, result)
    result = np.where(np.isnan(q), np.nan, result)
    result = np.where(q > 1, np.inf, result)
    return np.where(q < 0, -np.inf, result)


# -- aggregations ---------------------------------------------------------------------------------
def _aggregate(evaluator, node):
    op = str(node.op)
    if op not in _AGGREGATIONS or node.param is not None:
        return None
    vector = evaluator.steps(node.expr)
    if not isinstance(vector, list):
        return None
    modifier = node.modifier
    without = modifier is not None and str(modifier.type).endswith("Without")
    names = set(modifier.labels) if modifier is not None else set()
    groups: dict[tuple, tuple[Labels, list[StepSeries]]] = {}
    for series in vector:
        if without:
            grouping = {k: v for k, v in series.labels.items() if k not in names and k != "__name__"}
        else:
            grouping = {k: v for k, v in series.labels.items() if k in names}
        groups.setdefault(_key(grouping), (grouping, []))[1].append(series)
    steps = len(evaluator.times)
    with np.errstate(all="ignore"):
        return [_AGGREGATIONS[op](grouping, rows, steps) for grouping, rows in groups.values()]


def _any_present(rows: list[StepSeries], steps: int) -> np.ndarray:
    present = np.zeros(steps, dtype=bool)
    for row in rows:
        present |= row.present
    return present


def _agg_sum(grouping, rows, steps) -> StepSeries:
    total = np.zeros(steps)
    for row in rows:  # in the vector's order, as functions.plain_sum adds them
        total = np.where(row.present, total + row.values, total)
    return StepSeries(grouping, total, _any_present(rows, steps))


def _agg_avg(grouping, rows, steps) -> StepSeries:
    mean = count = np.zeros(steps)
    for row in rows:  # functions.incremental_mean(compensated=False), one row at a time
        v = row.values
        count = count + row.present
        skip = np.isinf(mean) & ((np.isinf(v) & ((mean > 0) == (v > 0))) | (~np.isinf(v) & ~np.isnan(v)))
        mean = np.where(row.present & ~skip, mean + (v / count - mean / count), mean)
    return StepSeries(grouping, np.where(np.isinf(mean), mean, mean + 0.0), _any_present(rows, steps))


def _agg_extreme(grouping, rows, steps, *, lowest: bool) -> StepSeries:
    result = np.zeros(steps)
    seen = np.zeros(steps, dtype=bool)
    for row in rows:  # functions.minimum/maximum: the first value, then any lower/higher, NaN replaced
        v = row.values
        better = (v < result) if lowest else (v > result)
        result = np.where(row.present & (~seen | better | np.isnan(result)), v, result)
        seen |= row.present
    return StepSeries(grouping, result, seen)


def _agg_count(grouping, rows, steps) -> StepSeries:
    count = np.zeros(steps)
    for row in rows:
        count = count + row.present
    return StepSeries(grouping, count, count > 0)


_AGGREGATIONS = {
    "sum": _agg_sum,
    "avg": _agg_avg,
    "min": lambda grouping, rows, steps: _agg_extreme(grouping, rows, steps, lowest=True),
    "max": lambda grouping, rows, steps: _agg_extreme(grouping, rows, steps, lowest=False),
    "count": _agg_count,
    "group": lambda grouping, rows, steps: StepSeries(grouping, np.ones(steps), _any_present(rows, steps)),
}


# -- binary operators with a scalar -----------------------------------------------------------------
_ARITHMETIC = {"+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide}
_COMPARISON = {
    "==": np.equal,
    "!=": np.not_equal,
    ">": np.greater,
    "<": np.less,
    ">=": np.greater_equal,
    "<=": np.less_equal,
}


def _binary(evaluator, node):
    op = str(node.op)
    if op not in _ARITHMETIC and op not in _COMPARISON:
        return None
    lhs, rhs = evaluator.steps(node.lhs), evaluator.steps(node.rhs)
    if lhs is None or rhs is None:
        return None
    return_bool = bool(node.modifier is not None and node.modifier.return_bool)
    with np.errstate(all="ignore"):
        if isinstance(lhs, np.ndarray) and isinstance(rhs, np.ndarray):
            if op in _ARITHMETIC:
                return _ARITHMETIC[op](lhs, rhs)
            return _COMPARISON[op](lhs, rhs).astype(np.float64)
        if isinstance(lhs, list) and isinstance(rhs, list):
            return None  # vector matching: step by step
        swap = isinstance(lhs, np.ndarray)
        vector, scalar = (rhs, lhs) if swap else (lhs, rhs)
        out = []
        for s in vector:
            left, right = (scalar, s.values) if swap else (s.values, scalar)
            if op in _ARITHMETIC:
                out.append(StepSeries(_drop_name(s.labels), _ARITHMETIC[op](left, right), s.present))
                continue
            keep = _COMPARISON[op](left, right)
            if return_bool:
                out.append(StepSeries(_drop_name(s.labels), keep.astype(np.float64), s.present))
            else:
                out.append(StepSeries(s.labels, s.values, s.present & keep))
        return out
