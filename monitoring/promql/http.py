"""Prometheus's HTTP API formats: parameter parsing and the JSON shapes of results and errors."""

from __future__ import annotations

import json
import math
import re
from datetime import datetime

import numpy as np
import orjson

from monitoring.promql.errors import PromQLError
from monitoring.promql.steps import Points

_DURATION = re.compile(r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$")
_DURATION_MS = (365 * 86_400_000, 7 * 86_400_000, 86_400_000, 3_600_000, 60_000, 1000, 1)


def time_param(value: str | None, *, name: str, default_ms: int | None = None) -> int:
    """A Prometheus time parameter (Unix seconds, possibly fractional, or RFC 3339) in milliseconds."""
    if value is None or value == "":
        if default_ms is None:
            raise PromQLError(f'invalid parameter "{name}": missing')
        return default_ms
    try:
        seconds = float(value)
    except ValueError:
        try:
            return round(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)
        except ValueError:
            raise PromQLError(f'invalid parameter "{name}": cannot parse "{value}" to a valid timestamp') from None
    if not math.isfinite(seconds):
        raise PromQLError(f'invalid parameter "{name}": cannot parse "{value}" to a valid timestamp')
    return round(seconds * 1000)


def duration_param(value: str | None, *, name: str) -> int:
    """A Prometheus duration parameter (float seconds or 1m30s) in milliseconds."""
    if not value:
        raise PromQLError(f'invalid parameter "{name}": missing')
    try:
        seconds = float(value)
    except ValueError:
        match = _DURATION.match(value)
        if match is None or not any(match.groups()):
            raise PromQLError(f'invalid parameter "{name}": cannot parse "{value}" to a valid duration') from None
        return sum(int(g) * unit for g, unit in zip(match.groups(), _DURATION_MS, strict=True) if g)
    if not math.isfinite(seconds):
        raise PromQLError(f'invalid parameter "{name}": cannot parse "{value}" to a valid duration')
    return round(seconds * 1000)


def format_value(value: float) -> str:
    """A float as Prometheus writes it (Go's strconv 'f', -1: shortest, never an exponent)."""
    # repr is the same shortest round-trip digits; without an exponent (and not inf or nan) it only
    # differs by a trailing ".0", and it is many times cheaper than numpy's formatter below.
    text = repr(float(value))
    if "e" not in text and "n" not in text:
        return text[:-2] if text.endswith(".0") else text
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return np.format_float_positional(value, unique=True, trim="-")


def _stamp(ms: int) -> float | int:
    return ms // 1000 if ms % 1000 == 0 else ms / 1000


def instant_data(kind: str, value, time_ms: int) -> dict:
    if kind == "scalar":
        return {"resultType": "scalar", "result": [_stamp(time_ms), format_value(value)]}
    if kind == "string":
        return {"resultType": "string", "result": [_stamp(time_ms), value]}
    if kind == "matrix":
        return {
            "resultType": "matrix",
            "result": [
                {
                    "metric": s.labels,
                    "values": [
                        [_stamp(int(t)), format_value(float(v))] for t, v in zip(s.stamps, s.values, strict=True)
                    ],
                }
                for s in value.series
            ],
        }
    return {
        "resultType": "vector",
        "result": [{"metric": labels, "value": [_stamp(time_ms), format_value(v)]} for labels, v in value],
    }


class EncodedJSON(bytes):
    """JSON encoded already (UTF-8), which the answer holds as it is."""


def range_data(series) -> EncodedJSON:
    """A range query's answer as JSON: a long range has millions of points, and encoding them a
    series at a time (below) is many times cheaper than a Python list and a call per point."""
    results = b",".join(
        b'{"metric":' + json.dumps(labels).encode() + b',"values":' + _values_json(points) + b"}"
        for labels, points in series
    )
    return EncodedJSON(b'{"resultType":"matrix","result":[' + results + b"]}")


_POINT_ZERO = re.compile(r"\.0(?=,|$)")


def _values_json(points: list[tuple[int, float]]) -> bytes:
    """[[t, "value"], ...] of a series' points, each as _stamp and format_value write it."""
    if not points:
        return b"[]"
    if isinstance(points, Points):  # from the fast path: arrays already
        ms, values = points.stamps, points.values
    else:
        stamps_ms, floats = zip(*points, strict=True)
        ms, values = np.array(stamps_ms, dtype=np.int64), np.array(floats, dtype=np.float64)
    texts = _value_texts(values)
    if (ms % 1000 == 0).all():
        return orjson.dumps(list(zip((ms // 1000).tolist(), texts, strict=True)))
    stamps = [orjson.Fragment(repr(_stamp(t))) for t in ms.tolist()]  # json writes them as repr does
    return orjson.dumps(list(zip(stamps, texts, strict=True)))


def _value_texts(values: np.ndarray) -> list[str]:
    """format_value of every value. orjson writes a float64 array's shortest round-trip digits, as
    repr does, ten times faster than json; where it writes neither an exponent nor null (NaN and
    infinities) that is format_value's text with a trailing ".0" more. The rest go through
    format_value."""
    encoded = orjson.dumps(np.ascontiguousarray(values, dtype=np.float64), option=orjson.OPT_SERIALIZE_NUMPY)
    texts = _POINT_ZERO.sub("", encoded[1:-1].decode()).split(",")
    if b"e" in encoded or b"n" in encoded:
        for i, text in enumerate(texts):
            if "e" in text or "n" in text:
                texts[i] = format_value(float(values[i]))
    return texts
