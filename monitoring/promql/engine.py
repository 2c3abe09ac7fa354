"""Evaluating a parsed PromQL expression over Perfpilot's store, with Prometheus 2.x semantics.

A range query is evaluated at every step at once where monitoring.promql.steps knows how (selectors,
functions over ranges, aggregations, operators with a scalar: numpy over all steps, bit-identical),
and step by step otherwise: each selector reads its samples once for the whole range
(monitoring.promql.data), and every step slices them; a node evaluated at every step is read from
there one step at a time. Values are Python floats; a vector is a list
of (labels, value) with labels as a dict that includes `__name__` while the metric name is kept.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from decimal import Decimal

import numpy as np
import promql_parser as pp

from monitoring.promql import functions, steps
from monitoring.promql.data import Matcher, StoredSeries, samples_read
from monitoring.promql.errors import PromQLError
from monitoring.promql.http import format_value

LOOKBACK_MS = 5 * 60 * 1000
MAX_POINTS = 11_000
# Functions whose value depends on the evaluation time even when their arguments do not (Prometheus's
# AtModifierUnsafeFunctions).
_AT_UNSAFE_FUNCTIONS = {"days_in_month", "day_of_month", "day_of_week", "day_of_year", "hour", "minute", "month"}
_AT_UNSAFE_FUNCTIONS |= {"year", "predict_linear", "time", "timestamp"}
# A subquery without a step (`[10m:]`) steps by Prometheus's global evaluation_interval, 1 m by default.
SUBQUERY_DEFAULT_STEP_MS = 60_000

Labels = dict[str, str]
Sample = tuple[Labels, float]
Vector = list[Sample]


@dataclass
class RangeSeries:
    """A range selector's window of one series at one step: what functions over ranges read."""

    labels: Labels
    stamps: np.ndarray
    values: np.ndarray


@dataclass
class Matrix:
    series: list[RangeSeries]
    range_ms: int
    offset_ms: int


@dataclass
class _Query:
    start_ms: int
    end_ms: int
    loaded: dict[int, list[StoredSeries]] = field(default_factory=dict)


_MATCH_OPS = {"MatchOp.Equal": "=", "MatchOp.NotEqual": "!=", "MatchOp.Re": "=~", "MatchOp.NotRe": "!~"}
ARITHMETIC = {"+", "-", "*", "/", "%", "^", "atan2"}
COMPARISON = {"==", "!=", ">", "<", ">=", "<="}
SET_OPS = {"and", "or", "unless"}


def parse(expression: str):
    renamed = _holt_winters_renamed(expression)
    try:
        return pp.parse(renamed)
    except (ValueError, RuntimeError) as exc:
        message = str(exc).replace(_PARSER_HOLT_WINTERS, "holt_winters")
        raise PromQLError(f'invalid parameter "query": {message}') from None


_PARSER_HOLT_WINTERS = "double_exponential_smoothing"
_CALL_OR_QUOTED = re.compile(
    r"""("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`|#[^\n]*)"""  # a string literal or a comment
    r"|\b(holt_winters|double_exponential_smoothing)(?=\s*\()"
)


def _holt_winters_renamed(expression: str) -> str:
    """promql-parser knows Prometheus 2.42's holt_winters() only by its 3.x name, which 2.42 does not
    know: the calls are renamed for the parser (string literals and comments left alone)."""

    def rename(match: re.Match) -> str:
        if match.group(1) is not None:
            return match.group(1)
        if match.group(2) == _PARSER_HOLT_WINTERS:
            raise PromQLError(f'invalid parameter "query": unknown function with name "{_PARSER_HOLT_WINTERS}"')
        return _PARSER_HOLT_WINTERS

    return _CALL_OR_QUOTED.sub(rename, expression)


def key_of(labels: Labels) -> tuple:
    return tuple(sorted(labels.items()))


def drop_name(labels: Labels) -> Labels:
    if "__name__" not in labels:
        return labels
    return {k: v for k, v in labels.items() if k != "__name__"}


def result_type(node) -> str:
    node = _unwrap(node)
    if isinstance(node, pp.NumberLiteral):
        return "scalar"
    if isinstance(node, pp.StringLiteral):
        return "string"
    if isinstance(node, pp.MatrixSelector | pp.SubqueryExpr):
        return "matrix"
    if isinstance(node, pp.Call):
        return "scalar" if node.func.name in ("time", "scalar", "pi") else "vector"
    if isinstance(node, pp.UnaryExpr):
        return result_type(node.expr)
    if isinstance(node, pp.BinaryExpr):
        types = {result_type(node.lhs), result_type(node.rhs)}
        return "scalar" if types == {"scalar"} else "vector"
    return "vector"


def _unwrap(node):
    while isinstance(node, pp.ParenExpr):
        node = node.expr
    return node


def _ms(delta) -> int:
    if delta is None:
        return 0
    return round(delta.total_seconds() * 1000)


class Evaluator:
    def __init__(
        self,
        expression: str | None,
        *,
        start_ms: int,
        end_ms: int,
        step_ms: int = 1,
        root=None,
        query_bounds: tuple[int, int] | None = None,
        data_end_ms: int | None = None,
    ) -> None:
        self.root = parse(expression) if root is None else root
        # What `@ start()` and `@ end()` name: the query's own start and end, also inside a subquery
        # (whose evaluator is given the same root of a parsed expression and its own steps).
        self.query_bounds = query_bounds or (start_ms, end_ms)
        self._subqueries: dict[int, list] = {}
        # The last time (ms) selectors without `@` read samples up to: a drifting subquery's steps may pass it.
        self.data_end_ms = end_ms if data_end_ms is None else data_end_ms
        self._drifting: set[int] = set()
        self.query = _Query(start_ms=start_ms, end_ms=end_ms)
        self.step_ms = step_ms
        self.times = np.arange(start_ms, end_ms + 1, step_ms, dtype=np.int64)
        # Per selector node, where each series' samples are at every step (searched once, not per step).
        self._positions: dict[int, list] = {}
        self._keep_alive: list = []
        # Per node, its value at every step (monitoring.promql.steps), or None: evaluated step by step.
        self._every_step: dict[int, object] = {}
        self._check(self.root)
        self._step_invariant(self.root)

    # -- checking what we support, before reading anything ------------------------------------
    def _check(self, node) -> None:
        node = _unwrap(node)
        if isinstance(node, pp.SubqueryExpr):
            self._at_ms(node.at)
            self._check(node.expr)
            return
        if isinstance(node, pp.VectorSelector | pp.MatrixSelector):
            vs = node if isinstance(node, pp.VectorSelector) else node.vector_selector
            self._at_ms(vs.at)
            if vs.matchers.or_matchers:
                raise PromQLError("'or' inside label matchers is not supported")
            return
        if isinstance(node, pp.Call):
            if node.func.name in functions.NATIVE_HISTOGRAM_FUNCTIONS:
                raise PromQLError(f"function {node.func.name!r} reads native histograms, which are not supported")
            if node.func.name not in functions.SUPPORTED:
                raise PromQLError(f"function {node.func.name!r} is not supported")
            for arg in node.args:
                self._check(arg)
            return
        if isinstance(node, pp.AggregateExpr):
            if str(node.op) not in AGGREGATIONS:
                raise PromQLError(f"aggregation {str(node.op)!r} is not supported")
            self._check(node.expr)
            return
        if isinstance(node, pp.BinaryExpr):
            if str(node.op) not in ARITHMETIC | COMPARISON | SET_OPS:
                raise PromQLError(f"operator {str(node.op)!r} is not supported")
            if node.modifier is not None and node.modifier.fill_values is not None:
                fill = node.modifier.fill_values
                if getattr(fill, "lhs", None) is not None or getattr(fill, "rhs", None) is not None:
                    raise PromQLError("fill modifiers are not supported")
            self._check(node.lhs)
            self._check(node.rhs)
            return
        if isinstance(node, pp.UnaryExpr):
            self._check(node.expr)

    # -- data -----------------------------------------------------------------------------------
    def _selector_data(self, vs, extra_ms: int) -> list[StoredSeries]:
        cached = self.query.loaded.get(id(vs))
        if cached is None:
            offset = _ms(vs.offset)
            first, last = self._reference_span(vs)
            if vs.at is None:
                last = min(last, self.data_end_ms)
            matchers = [Matcher(m.name, _MATCH_OPS[str(m.op)], m.value) for m in vs.matchers.matchers]
            if vs.name and not any(m.name == "__name__" for m in matchers):
                matchers.insert(0, Matcher("__name__", "=", vs.name))
            cached = samples_read(
                matchers=matchers,
                start_ms=first - offset - extra_ms,
                end_ms=last - offset,
            )
            self.query.loaded[id(vs)] = cached
            self._keep_alive.append(vs)  # id() stays unique while the node lives
        return cached

    def selector_data(self, vs, extra_ms: int) -> list[StoredSeries]:
        """The selector's series with their samples over the query's range and extra_ms before it."""
        return self._selector_data(vs, extra_ms)

    # -- evaluation at every step at once (the fast path of range queries) ------------------------
    def steps(self, node):
        """The node's value at every step (monitoring.promql.steps), or None if it goes step by step."""
        node = _unwrap(node)
        key = id(node)
        if key not in self._every_step:
            self._every_step[key] = steps.evaluate(self, node)
            self._keep_alive.append(node)
        return self._every_step[key]

    def prepare_steps(self, node):
        """Evaluate at every step at once each largest part of the expression that can be; the root's
        value at every step, or None when it (or a part of it) is evaluated step by step."""
        node = _unwrap(node)
        value = self.steps(node)
        if value is None:
            children = {
                pp.Call: lambda: node.args,
                pp.AggregateExpr: lambda: [node.expr, node.param],
                pp.BinaryExpr: lambda: [node.lhs, node.rhs],
                pp.UnaryExpr: lambda: [node.expr],
            }.get(type(node), list)()
            for child in children:
                if child is not None:
                    self.prepare_steps(child)
        return value

    # -- evaluation -----------------------------------------------------------------------------
    def eval(self, node, t: int):
        node = _unwrap(node)
        if self._every_step:
            value = self._every_step.get(id(node))
            if value is not None:
                return steps.at_step(value, self._step(t))
        if isinstance(node, pp.NumberLiteral):
            return float(node.val)
        if isinstance(node, pp.StringLiteral):
            return node.val
        if isinstance(node, pp.VectorSelector):
            return self._instant_vector(node, t)
        if isinstance(node, pp.MatrixSelector):
            return self._matrix(node, t)
        if isinstance(node, pp.SubqueryExpr):
            return self._subquery(node, t)
        if isinstance(node, pp.UnaryExpr):
            value = self.eval(node.expr, t)
            if isinstance(value, float):
                return -value
            return [(drop_name(labels), -v) for labels, v in value]
        if isinstance(node, pp.Call):
            if node.func.name in _OF_THE_EXPRESSION:
                return _OF_THE_EXPRESSION[node.func.name](self, node, t)
            args = [self.eval(arg, t) for arg in node.args]
            return functions.call(node.func.name, args, t)
        if isinstance(node, pp.AggregateExpr):
            return self._aggregate(node, t)
        if isinstance(node, pp.BinaryExpr):
            return self._binary(node, t)
        raise PromQLError(f"unsupported expression: {node}")

    def _step(self, t: int) -> int:
        return (t - self.query.start_ms) // self.step_ms

    def _instant_vector(self, vs, t: int) -> Vector:
        positions = self._positions.get(id(vs))
        if positions is None:
            at = self._reference_times(vs) - _ms(vs.offset)
            positions = []
            for series in self._selector_data(vs, LOOKBACK_MS):
                index = np.searchsorted(series.stamps, at, side="right") - 1
                clipped = np.maximum(index, 0)
                seen = (index >= 0) & (series.stamps[clipped] >= at - LOOKBACK_MS)
                positions.append((series.labels, seen.tolist(), series.values[clipped].tolist()))
            self._positions[id(vs)] = positions
        i = 0 if self._pinned_ms(vs) is not None else self._step(t)
        return [(labels, values[i]) for labels, seen, values in positions if seen[i]]

    def _matrix(self, node, t: int) -> Matrix:
        vs = node.vector_selector
        range_ms = _ms(node.range)
        offset = _ms(vs.offset)
        positions = self._positions.get(id(node))
        if positions is None:
            end = self._reference_times(vs) - offset
            positions = [
                (
                    series,
                    np.searchsorted(series.stamps, end - range_ms, side="left").tolist(),
                    np.searchsorted(series.stamps, end, side="right").tolist(),
                )
                for series in self._selector_data(vs, range_ms)
            ]
            self._positions[id(node)] = positions
            self._keep_alive.append(node)
        at = self._pinned_ms(vs)
        i = 0 if at is not None else self._step(t)
        out = [
            RangeSeries(series.labels, series.stamps[lo[i] : hi[i]], series.values[lo[i] : hi[i]])
            for series, lo, hi in positions
            if hi[i] > lo[i]
        ]
        return Matrix(out, range_ms, offset - self._shift_ms(vs) if at is None else offset + t - at)

    # -- the @ modifier and subqueries -------------------------------------------------------------
    def _at_ms(self, at) -> int | None:
        """The time (ms) an `@` modifier fixes, or None without one."""
        if at is None:
            return None
        kind = str(at.type)
        if kind.endswith("Start"):
            return self.query_bounds[0]
        if kind.endswith("End"):
            return self.query_bounds[1]
        try:
            moment = at.at
        except BaseException as exc:  # promql-parser panics (a BaseException) on times before 1970
            if type(exc).__name__ != "PanicException":
                raise
            raise PromQLError("@ modifier times before 1970 are not supported") from None
        return round(moment.timestamp() * 1000)

    def _pinned_ms(self, node) -> int | None:
        """The one time a selector or subquery with `@` is evaluated at (None without `@`, or when it drifts)."""
        return None if id(node) in self._drifting else self._at_ms(node.at)

    def _shift_ms(self, node) -> int:
        """How far ahead of each step a drifting `@` range is read: its time less the first step's."""
        return self._at_ms(node.at) - self.query.start_ms if id(node) in self._drifting else 0

    def _reference_span(self, node) -> tuple[int, int]:
        """The first and last times (ms) a selector or subquery is evaluated at, before its offset. A
        drifting selector reads only the samples of its `@` time (what Prometheus loads for it)."""
        fixed = self._at_ms(node.at) if isinstance(node, pp.VectorSelector) else self._pinned_ms(node)
        if fixed is not None:
            return fixed, fixed
        shift = self._shift_ms(node)
        return self.query.start_ms + shift, self.query.end_ms + shift

    def _reference_times(self, node) -> np.ndarray:
        pinned = self._pinned_ms(node)
        return self.times + self._shift_ms(node) if pinned is None else np.array([pinned], dtype=np.int64)

    def _step_invariant(self, node) -> bool:
        """Whether Prometheus 2.42 evaluates the node once for all steps (its preprocessing), marking on the
        way the `@` ranges it reads at moving times: the range argument of a function it evaluates at every
        step (predict_linear, or another argument varies) is read at the `@` time plus (step - first step),
        as Prometheus turns `@` into an offset from the first step."""
        node = _unwrap(node)
        if isinstance(node, pp.NumberLiteral | pp.StringLiteral):
            return True
        if isinstance(node, pp.VectorSelector):
            return node.at is not None
        if isinstance(node, pp.MatrixSelector):
            return node.vector_selector.at is not None
        if isinstance(node, pp.SubqueryExpr):
            self._step_invariant(node.expr)
            return node.at is not None
        if isinstance(node, pp.UnaryExpr | pp.AggregateExpr):
            return self._step_invariant(node.expr)
        if isinstance(node, pp.BinaryExpr):
            left, right = self._step_invariant(node.lhs), self._step_invariant(node.rhs)
            return left and right
        if isinstance(node, pp.Call):
            invariant = [self._step_invariant(arg) for arg in node.args]
            if node.func.name not in _AT_UNSAFE_FUNCTIONS and all(invariant):
                return True
            for arg in map(_unwrap, node.args):
                if isinstance(arg, pp.MatrixSelector) and arg.vector_selector.at is not None:
                    self._drifting.add(id(arg.vector_selector))
                elif isinstance(arg, pp.SubqueryExpr) and arg.at is not None:
                    self._drifting.add(id(arg))
            return False
        return False

    def _subquery(self, node, t: int) -> Matrix:
        """`expr[range:step]`: expr evaluated at every multiple of step (counted from 0, as Prometheus
        aligns them) within [t - offset - range, t - offset], t being the @ time when there is one."""
        range_ms, offset, at = _ms(node.range), _ms(node.offset), self._pinned_ms(node)
        computed = self._subqueries.get(id(node))
        if computed is None:
            step = _ms(node.step) or SUBQUERY_DEFAULT_STEP_MS
            first, last = self._reference_span(node)
            start = -((range_ms + offset - first) // step) * step  # the first multiple of step in the range
            inner = Evaluator(
                None,
                start_ms=start,
                end_ms=last - offset,
                step_ms=step,
                root=node.expr,
                query_bounds=self.query_bounds,
                data_end_ms=(self.data_end_ms if node.at is None else self._at_ms(node.at)) - offset,
            )
            computed = _steps_evaluated(inner)
            self._subqueries[id(node)] = computed
            self._keep_alive.append(node)
        end = (t + self._shift_ms(node) if at is None else at) - offset
        out = []
        for labels, stamps, values in computed:
            lo, hi = np.searchsorted(stamps, end - range_ms, side="left"), np.searchsorted(stamps, end, side="right")
            if hi > lo:
                out.append(RangeSeries(labels, stamps[lo:hi], values[lo:hi]))
        return Matrix(out, range_ms, offset - self._shift_ms(node) if at is None else offset + t - at)

    def _sample_stamps(self, vs, t: int) -> Vector:
        """timestamp(selector): each selected sample's own time, in seconds."""
        at, offset = self._at_ms(vs.at), _ms(vs.offset)
        if at is None:
            last, oldest = t - offset, t - offset - LOOKBACK_MS
        else:
            # Prometheus 2.42 looks timestamp(x @ T offset o) up at T itself, among the samples it loaded
            # for T - o ([T - o - 5m, T - o]): the last up to both, within 5 minutes of both.
            last, oldest = min(at, at - offset), max(at, at - offset) - LOOKBACK_MS
        out = []
        for series in self._selector_data(vs, LOOKBACK_MS):
            index = int(np.searchsorted(series.stamps, last, side="right")) - 1
            if index >= 0 and series.stamps[index] >= oldest:
                out.append((drop_name(series.labels), int(series.stamps[index]) / 1000))
        return out

    # -- aggregations -------------------------------------------------------------------------
    def _aggregate(self, node, t: int) -> Vector:
        op = str(node.op)
        vector = self.eval(node.expr, t)
        param = self.eval(node.param, t) if node.param is not None else None
        modifier = node.modifier
        without = modifier is not None and str(modifier.type).endswith("Without")
        names = set(modifier.labels) if modifier is not None else set()
        if op == "count_values":
            vector, names = _values_labelled(vector, param, names, without=without)

        def group_labels(labels: Labels) -> Labels:
            if without:
                return {k: v for k, v in labels.items() if k not in names and k != "__name__"}
            return {k: v for k, v in labels.items() if k in names}

        groups: dict[tuple, tuple[Labels, list[Sample]]] = {}
        for labels, value in vector:
            grouping = group_labels(labels)
            groups.setdefault(key_of(grouping), (grouping, []))[1].append((labels, value))
        return AGGREGATIONS[op](groups, param)

    # -- binary operators -------------------------------------------------------------------------
    def _binary(self, node, t: int):
        op = str(node.op)
        modifier = node.modifier
        return_bool = bool(modifier is not None and modifier.return_bool)
        lhs = self.eval(node.lhs, t)
        rhs = self.eval(node.rhs, t)
        if isinstance(lhs, float) and isinstance(rhs, float):
            value, keep = _elem(op, lhs, rhs)
            if op in COMPARISON:
                return 1.0 if keep else 0.0
            return value
        if isinstance(lhs, float) or isinstance(rhs, float):
            return _vector_scalar(op, lhs, rhs, return_bool)
        return _vector_vector(op, lhs, rhs, modifier, return_bool)


def _elem(op: str, lhs: float, rhs: float) -> tuple[float, bool]:
    if op == "+":
        return lhs + rhs, True
    if op == "-":
        return lhs - rhs, True
    if op == "*":
        return lhs * rhs, True
    if op == "/":
        return functions.divide(lhs, rhs), True
    if op == "%":
        return functions.go_mod(lhs, rhs), True
    if op == "^":
        return functions.go_pow(lhs, rhs), True
    if op == "atan2":
        return math.atan2(lhs, rhs), True
    if op == "==":
        return lhs, lhs == rhs
    if op == "!=":
        return lhs, lhs != rhs
    if op == ">":
        return lhs, lhs > rhs
    if op == "<":
        return lhs, lhs < rhs
    if op == ">=":
        return lhs, lhs >= rhs
    if op == "<=":
        return lhs, lhs <= rhs
    raise PromQLError(f"operator {op!r} is not supported between a vector and a scalar")


def _vector_scalar(op: str, lhs, rhs, return_bool: bool) -> Vector:
    if op in SET_OPS:
        raise PromQLError(f"set operator {op!r} not allowed in binary scalar expression")
    swap = isinstance(lhs, float)
    vector, scalar = (rhs, lhs) if swap else (lhs, rhs)
    out = []
    for labels, v in vector:
        left, right = (scalar, v) if swap else (v, scalar)
        value, keep = _elem(op, left, right)
        if op in COMPARISON and not return_bool:
            value = v  # the vector's own value, whichever side it is on
        if return_bool:
            value, keep = (1.0 if keep else 0.0), True
        if not keep:
            continue
        if op in ARITHMETIC or return_bool:
            labels = drop_name(labels)
        out.append((labels, value))
    return out


def _signature(modifier):
    matching = modifier.matching if modifier is not None else None
    if matching is None:
        return lambda labels: key_of(drop_name(labels)), False, []
    names = list(matching.labels)
    if str(matching.type).endswith("Include"):  # on(...)
        wanted = set(names)
        return lambda labels: tuple(sorted((k, v) for k, v in labels.items() if k in wanted)), True, names
    ignored = set(names) | {"__name__"}
    return lambda labels: tuple(sorted((k, v) for k, v in labels.items() if k not in ignored)), False, names


def _vector_vector(op: str, lhs: Vector, rhs: Vector, modifier, return_bool: bool) -> Vector:
    sig, on, matching_names = _signature(modifier)
    if op in SET_OPS:
        rhs_sigs = {sig(labels) for labels, _ in rhs}
        if op == "and":
            return [(labels, v) for labels, v in lhs if sig(labels) in rhs_sigs]
        if op == "unless":
            return [(labels, v) for labels, v in lhs if sig(labels) not in rhs_sigs]
        lhs_sigs = {sig(labels) for labels, _ in lhs}
        return list(lhs) + [(labels, v) for labels, v in rhs if sig(labels) not in lhs_sigs]
    card = str(modifier.card) if modifier is not None else "VectorMatchCardinality.OneToOne"
    one_to_many = card.endswith("OneToMany")
    one_to_one = card.endswith("OneToOne")
    include = list(modifier.group_labels or []) if modifier is not None and not one_to_one else []
    if one_to_many:
        lhs, rhs = rhs, lhs
    right: dict[tuple, Sample] = {}
    for labels, v in rhs:
        s = sig(labels)
        if s in right:
            side = "left" if one_to_many else "right"
            raise PromQLError(
                f"found duplicate series for the match group {_fmt(dict(s))} on the {side} hand-side of the operation: "
                f"[{_fmt(labels)}, {_fmt(right[s][0])}];many-to-many matching not allowed: "
                "matching labels must be unique on one side",
                error_type="execution",
            )
        right[s] = (labels, v)
    matched: dict[tuple, set | None] = {}
    out = []
    for labels, v in lhs:
        s = sig(labels)
        found = right.get(s)
        if found is None:
            continue
        r_labels, rv = found
        vl, vr = (rv, v) if one_to_many else (v, rv)
        value, keep = _elem(op, vl, vr)
        if return_bool:
            value, keep = (1.0 if keep else 0.0), True
        if not keep:
            continue
        metric = dict(labels)
        if op in ARITHMETIC or return_bool:
            metric.pop("__name__", None)
        if one_to_one:
            if on:
                metric = {k: val for k, val in metric.items() if k in set(matching_names)}
            else:
                metric = {k: val for k, val in metric.items() if k not in set(matching_names)}
        for name in include:
            if r_labels.get(name, ""):
                metric[name] = r_labels[name]
            else:
                metric.pop(name, None)
        if one_to_one:
            if s in matched:
                raise PromQLError(
                    "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)",
                    error_type="execution",
                )
            matched[s] = None
        else:
            inserted = matched.setdefault(s, set())
            metric_key = key_of(metric)
            if metric_key in inserted:
                raise PromQLError(
                    "multiple matches for labels: grouping labels must ensure unique matches", error_type="execution"
                )
            inserted.add(metric_key)
        out.append((metric, value))
    return out


def _fmt(labels: Labels) -> str:
    """Labels as Prometheus's labels.String() writes them in its messages: {__name__="m", a="b"}."""
    return "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


# -- functions that need their argument's expression, not only its value ----------------------------
def _absent_labels(node) -> Labels:
    """absent()'s labels: those its selector fixes with `=` (once only), as Prometheus 2.42 builds them."""
    node = _unwrap(node)
    if isinstance(node, pp.MatrixSelector):
        node = node.vector_selector
    if not isinstance(node, pp.VectorSelector):
        return {}
    labels: Labels = {}
    fixed: set[str] = set()
    for matcher in node.matchers.matchers:
        if matcher.name == "__name__":
            continue
        if _MATCH_OPS[str(matcher.op)] == "=" and matcher.name not in fixed:
            fixed.add(matcher.name)
            if matcher.value:
                labels[matcher.name] = matcher.value
        else:
            labels.pop(matcher.name, None)
    return labels


def _absent(evaluator: Evaluator, node, t: int) -> Vector:
    value = evaluator.eval(node.args[0], t)
    present = value.series if isinstance(value, Matrix) else value
    return [] if present else [(_absent_labels(node.args[0]), 1.0)]


def _timestamp(evaluator: Evaluator, node, t: int) -> Vector:
    argument = _unwrap(node.args[0])
    if isinstance(argument, pp.VectorSelector):
        return evaluator._sample_stamps(argument, t)
    # Any other expression's samples are of the evaluation time.
    return [(drop_name(labels), t / 1000) for labels, _ in evaluator.eval(argument, t)]


_OF_THE_EXPRESSION = {"absent": _absent, "absent_over_time": _absent, "timestamp": _timestamp}


def _values_labelled(vector: Vector, name, names: set[str], *, without: bool) -> tuple[Vector, set[str]]:
    """count_values: each sample labelled with its value, that label added to a `by` grouping."""
    if not isinstance(name, str) or not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", name):
        raise PromQLError(f'invalid label name "{name}"', error_type="execution")
    labelled = [({**labels, name: format_value(value)}, value) for labels, value in vector]
    return labelled, names if without else names | {name}


def _steps_evaluated(evaluator: Evaluator) -> list[tuple[Labels, np.ndarray, np.ndarray]]:
    """A subquery's expression at each of its steps: (labels, times ms, values) per series."""
    series: dict[tuple, tuple[Labels, list, list]] = {}
    for t in evaluator.times.tolist():
        vector = evaluator.eval(evaluator.root, t)
        keys = [key_of(labels) for labels, _ in vector]
        if len(set(keys)) != len(keys):
            raise PromQLError(_SAME_LABELSET, error_type="execution")
        for key, (labels, value) in zip(keys, vector, strict=True):
            entry = series.setdefault(key, (labels, [], []))
            entry[1].append(t)
            entry[2].append(value)
    return [
        (labels, np.array(stamps, dtype=np.int64), np.array(values, dtype=np.float64))
        for labels, stamps, values in (series[key] for key in sorted(series))
    ]


# -- aggregation operators ----------------------------------------------------------------------
def _agg_simple(reduce):
    def aggregate(groups, _param):
        return [(grouping, reduce([v for _, v in samples])) for grouping, samples in groups.values()]

    return aggregate


def _go_float(value: float) -> str:
    """A float as Go's %v writes it (in Prometheus's error messages): the shortest digits, in exponent
    form when the exponent is below -4 or 6 and above (1e+20, 1.234567e+06)."""
    if math.isnan(value) or math.isinf(value):
        return "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")
    if value == 0:
        return "-0" if math.copysign(1, value) < 0 else "0"
    sign, digit_tuple, exponent = Decimal(repr(value)).normalize().as_tuple()
    digits = "".join(map(str, digit_tuple))
    point = len(digits) + exponent  # the decimal point's place among the digits
    if point - 1 < -4 or point - 1 >= 6:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        text = f"{mantissa}e{'-' if point - 1 < 0 else '+'}{abs(point - 1):02d}"
    elif point <= 0:
        text = "0." + "0" * -point + digits
    else:
        text = digits[:point] + "0" * (point - len(digits)) + ("." + digits[point:] if point < len(digits) else "")
    return ("-" if sign else "") + text


_MAX_INT64_FLOAT = 9223372036854774784.0  # the largest float64 below 2^63, as Prometheus's maxInt64


def _k(groups, param, *, top: bool) -> Vector:
    if not isinstance(param, float):
        raise PromQLError("expected a scalar parameter for topk/bottomk")
    # Go's convertibleToInt64 in 2.42's aggregation(): NaN or a k past int64 fails the whole query (a 422).
    if not -(2.0**63) <= param <= _MAX_INT64_FLOAT:
        raise PromQLError(f"Scalar value {_go_float(param)} overflows int64", error_type="execution")
    k = int(param)
    out = []
    if k < 1:
        return out
    for _grouping, samples in groups.values():
        out.extend(_k_selected(samples, k, top=top))
    return out


def _k_selected(samples: list[Sample], k: int, *, top: bool) -> list[Sample]:
    """The k samples 2.42's heap keeps, so that ties and NaN pick the same series: a min-heap (max-heap
    for bottomk) of up to k with NaN at the top; a sample replaces the top when it is beyond it or the
    top is NaN (even by a NaN), then sifts down as Go's container/heap does."""

    def less(a: float, b: float) -> bool:
        return math.isnan(a) or (a < b if top else a > b)

    heap: list[Sample] = []
    for sample in samples:
        if len(heap) < k:
            heap.append(sample)
            j = len(heap) - 1
            while j > 0 and less(heap[j][1], heap[(j - 1) // 2][1]):
                heap[j], heap[(j - 1) // 2] = heap[(j - 1) // 2], heap[j]
                j = (j - 1) // 2
            continue
        top_value = heap[0][1]
        if not ((top_value < sample[1] if top else top_value > sample[1]) or math.isnan(top_value)):
            continue
        heap[0] = sample
        i = 0
        while (child := 2 * i + 1) < len(heap):
            if child + 1 < len(heap) and less(heap[child + 1][1], heap[child][1]):
                child += 1
            if not less(heap[child][1], heap[i][1]):
                break
            heap[i], heap[child] = heap[child], heap[i]
            i = child
    # Answered best first, NaN last, as 2.42 sorts the heap it answers.
    return sorted(heap, key=lambda sample: (1, 0.0) if math.isnan(sample[1]) else (0, -sample[1] if top else sample[1]))


def _quantile(groups, param) -> Vector:
    if not isinstance(param, float):
        raise PromQLError("expected a scalar parameter for quantile")
    return [(grouping, functions.quantile(param, [v for _, v in samples])) for grouping, samples in groups.values()]


AGGREGATIONS = {
    "sum": _agg_simple(functions.plain_sum),
    "avg": _agg_simple(lambda values: functions.incremental_mean(values, compensated=False)),
    "min": _agg_simple(functions.minimum),
    "max": _agg_simple(functions.maximum),
    "count": _agg_simple(lambda values: float(len(values))),
    "topk": lambda groups, param: _k(groups, param, top=True),
    "bottomk": lambda groups, param: _k(groups, param, top=False),
    "quantile": _quantile,
    "stdvar": _agg_simple(functions.variance),
    "stddev": _agg_simple(lambda values: math.sqrt(functions.variance(values))),
    "group": _agg_simple(lambda values: 1.0),
    "count_values": _agg_simple(lambda values: float(len(values))),
}


# -- running a query --------------------------------------------------------------------------------
def evaluate_instant(expression: str, *, time_ms: int):
    """(result type, value) of the expression at one time: a float, a string or a vector."""
    evaluator = Evaluator(expression, start_ms=time_ms, end_ms=time_ms)
    kind = result_type(evaluator.root)
    value = evaluator.eval(evaluator.root, time_ms)
    if isinstance(value, Matrix):
        return "matrix", value
    if kind == "vector":
        _check_unique(value)
    return kind, value


def evaluate_range(expression: str, *, start_ms: int, end_ms: int, step_ms: int) -> list[tuple[Labels, list]]:
    """[(labels, [(t ms, value)])] of the expression at every step from start to end."""
    if step_ms <= 0:
        raise PromQLError("zero or negative query resolution step widths are not accepted. Try a positive integer")
    if (end_ms - start_ms) // step_ms >= MAX_POINTS:
        raise PromQLError(
            "exceeded maximum resolution of 11,000 points per timeseries. "
            "Try decreasing the query resolution (?step=XX)"
        )
    evaluator = Evaluator(expression, start_ms=start_ms, end_ms=end_ms, step_ms=step_ms)
    kind = result_type(evaluator.root)
    if kind not in ("vector", "scalar"):
        raise PromQLError(
            f'invalid expression type "{"range vector" if kind == "matrix" else kind}" for range query, '
            "must be Scalar or instant Vector"
        )
    every_step = evaluator.prepare_steps(evaluator.root)
    if every_step is not None:
        return steps.range_result(every_step, evaluator.times)
    series: dict[tuple, tuple[Labels, list]] = {}
    t = start_ms
    while t <= end_ms:
        value = evaluator.eval(evaluator.root, t)
        if isinstance(value, float):
            series.setdefault((), ({}, []))[1].append((t, value))
        else:
            keys = [key_of(labels) for labels, _ in value]
            if len(set(keys)) != len(keys):
                raise PromQLError(_SAME_LABELSET, error_type="execution")
            for key, (labels, v) in zip(keys, value, strict=True):
                series.setdefault(key, (labels, []))[1].append((t, v))
        t += step_ms
    return [series[key] for key in sorted(series)]


_SAME_LABELSET = "vector cannot contain metrics with the same labelset"


def _check_unique(vector: Vector) -> None:
    seen = set()
    for labels, _ in vector:
        key = key_of(labels)
        if key in seen:
            raise PromQLError(_SAME_LABELSET, error_type="execution")
        seen.add(key)
