"""OTLP/HTTP metrics: `ExportMetricsServiceRequest` as protobuf or JSON, optionally gzip-compressed.

Series are named the way Prometheus's OTLP translation names them, so that a metric reads the same
whether it came through an OpenTelemetry Collector's Prometheus exporter, remote write or here:

- metric names: the name's words joined by `_`, then the unit's word (`s` -> `seconds`, `By` ->
  `bytes`, `ms` -> `milliseconds`, `1/s` -> `per_second`, `{requests}` annotations dropped), then
  `_total` for monotonic sums and `_ratio` for gauges of unit `1`;
- labels: the data point's attributes (invalid characters become `_`); `job` is the resource's
  `service.name` (prefixed `service.namespace/`), `instance` its `service.instance.id`; other
  resource attributes are not stored;
- gauges are gauges; monotonic cumulative sums are counters; non-monotonic sums are gauges; delta
  sums are added to the series' stored total (so they are stored cumulative, like the rest);
  histograms become `_bucket{le}` (cumulative counts, `+Inf` included), `_sum` and `_count`
  counters; summaries `{quantile}` gauges with `_sum` and `_count`.

Not stored: exponential histograms (rejected with a partial-success message naming them), points
flagged "no recorded value" and NaN values (as Prometheus drops stale points).
"""

from __future__ import annotations

import math
import re
import time
from decimal import Decimal

import numpy as np
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from google.rpc import code_pb2, status_pb2
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsPartialSuccess,
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.metrics.v1 import metrics_pb2

from core.errors import InvalidInput
from core.registry import registry
from monitoring.models import Series
from monitoring.protocols.base import (
    Decoded,
    ProtocolError,
    Receiver,
    UnsupportedMediaType,
    check_series,
    gzip_decompress,
    media_type,
)
from monitoring.storage import SeriesSpec, labels_key

PROTOBUF, JSON = "application/x-protobuf", "application/json"
DELTA = metrics_pb2.AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
NO_RECORDED_VALUE = metrics_pb2.DataPointFlags.DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK

UNITS = {
    "d": "days",
    "h": "hours",
    "min": "minutes",
    "s": "seconds",
    "ms": "milliseconds",
    "us": "microseconds",
    "ns": "nanoseconds",
    "By": "bytes",
    "KiBy": "kibibytes",
    "MiBy": "mebibytes",
    "GiBy": "gibibytes",
    "TiBy": "tibibytes",
    "KBy": "kilobytes",
    "MBy": "megabytes",
    "GBy": "gigabytes",
    "TBy": "terabytes",
    "m": "meters",
    "V": "volts",
    "A": "amperes",
    "J": "joules",
    "W": "watts",
    "g": "grams",
    "Cel": "celsius",
    "Hz": "hertz",
    "%": "percent",
}
PER_UNITS = {"s": "second", "m": "minute", "h": "hour", "d": "day", "w": "week", "mo": "month", "y": "year"}
_WORD_BREAK = re.compile(r"[^a-zA-Z0-9]+")
_LABEL_INVALID = re.compile(r"[^a-zA-Z0-9_]")


def metric_name(name: str, unit: str, *, monotonic_sum: bool = False, gauge: bool = False) -> str:
    """Prometheus's OTLP translation of a metric name (otlptranslator's BuildCompliantName, with suffixes)."""
    words = [word for word in _WORD_BREAK.split(name) if word]
    main, _, per = unit.partition("/")
    main, per = main.strip(), per.strip()
    if main and "{" not in main:
        word = UNITS.get(main, main)
        if word and word != "1" and word not in words:
            words.append(word)
    if per and "{" not in per:
        word = PER_UNITS.get(per, per)
        if word:
            words.extend(["per", word])
    if monotonic_sum:
        words = [word for word in words if word != "total"] + ["total"]
    if unit == "1" and gauge:
        words = [word for word in words if word != "ratio"] + ["ratio"]
    joined = "_".join(_WORD_BREAK.sub("_", word) for word in words)
    return f"_{joined}" if joined[:1].isdigit() else joined


def label_name(name: str) -> str:
    sanitized = _LABEL_INVALID.sub("_", name)
    if sanitized[:1].isdigit():
        return f"key_{sanitized}"
    if sanitized.startswith("_") and not sanitized.startswith("__"):
        return f"key{sanitized}"
    return sanitized


def go_float(value: float) -> str:
    """A float as Go's strconv.FormatFloat(v, 'g', -1, 64) writes it: Prometheus's `le` and `quantile`."""
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    if value == 0:
        return "0"
    sign, digits, exponent = Decimal(repr(value)).normalize().as_tuple()
    text = "".join(map(str, digits))
    point = len(text) + exponent  # digits before the decimal point
    exp = point - 1
    prefix = "-" if sign else ""
    if exp < -4 or exp >= 6:  # Go's shortest 'g' switches to %e outside these exponents
        mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
        return f"{prefix}{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if point <= 0:
        return f"{prefix}0.{'0' * -point}{text}"
    if point >= len(text):
        return f"{prefix}{text}{'0' * (point - len(text))}"
    return f"{prefix}{text[:point]}.{text[point:]}"


def _attribute(value) -> str:
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return "true" if value.bool_value else "false"
    if kind in ("int_value", "double_value"):
        return str(getattr(value, kind))
    if kind is None:
        return ""
    return json_format.MessageToJson(value, indent=None)


class _Columns:
    """Points grouped by series, in arrival order within each series."""

    def __init__(self) -> None:
        self.index: dict[tuple[str, str], int] = {}
        self.specs: list[SeriesSpec] = []
        self.deltas: list[bool] = []
        self.points: list[list[tuple[float, float]]] = []
        self.dropped = 0

    def add(self, metric: str, labels: dict[str, str], kind: str, delta: bool, stamp: float, value: float) -> None:
        if math.isnan(value) or math.isinf(value):
            self.dropped += 1
            return
        key = labels_key(labels)
        position = self.index.get((metric, key))
        if position is None:
            check_series(metric, labels, key)
            position = self.index[(metric, key)] = len(self.specs)
            self.specs.append(SeriesSpec(metric, labels, kind))
            self.deltas.append(delta)
            self.points.append([])
        self.points[position].append((stamp, value))

    def decoded(self, *, rejected: int, message: str) -> Decoded:
        flat = [point for points in self.points for point in points]
        array = np.asarray(flat, dtype=np.float64).reshape(-1, 2)
        return Decoded(
            specs=self.specs,
            counts=[len(points) for points in self.points],
            stamps=array[:, 0].copy(),
            values=array[:, 1].copy(),
            deltas=self.deltas if any(self.deltas) else None,
            dropped=self.dropped,
            rejected=rejected,
            message=message,
        )


def _resource_labels(resource) -> dict[str, str]:
    attributes = {kv.key: _attribute(kv.value) for kv in resource.attributes}
    labels = {}
    service = attributes.get("service.name", "")
    if service:
        namespace = attributes.get("service.namespace", "")
        labels["job"] = f"{namespace}/{service}" if namespace else service
    if attributes.get("service.instance.id"):
        labels["instance"] = attributes["service.instance.id"]
    return labels


def _point_labels(base: dict[str, str], attributes) -> dict[str, str]:
    labels = dict(base)
    for kv in attributes:
        value = _attribute(kv.value)
        if value:
            labels[label_name(kv.key)] = value
    return labels


def _stamp(point, now: float) -> float:
    return point.time_unix_nano / 1e9 if point.time_unix_nano else now


def _number(point) -> float:
    return point.as_double if point.WhichOneof("value") == "as_double" else float(point.as_int)


def _add_metric(columns: _Columns, metric, base: dict[str, str], now: float) -> int:
    """Add one metric's data points; returns how many data points were rejected."""
    data = metric.WhichOneof("data")
    counter, gauge = Series.Kind.COUNTER, Series.Kind.GAUGE
    if data == "gauge":
        name = metric_name(metric.name, metric.unit, gauge=True)
        for point in metric.gauge.data_points:
            if point.flags & NO_RECORDED_VALUE:
                columns.dropped += 1
                continue
            labels = _point_labels(base, point.attributes)
            columns.add(name, labels, gauge, False, _stamp(point, now), _number(point))
    elif data == "sum":
        monotonic = metric.sum.is_monotonic
        name = metric_name(metric.name, metric.unit, monotonic_sum=monotonic)
        delta = metric.sum.aggregation_temporality == DELTA
        for point in metric.sum.data_points:
            if point.flags & NO_RECORDED_VALUE:
                columns.dropped += 1
                continue
            labels = _point_labels(base, point.attributes)
            columns.add(name, labels, counter if monotonic else gauge, delta, _stamp(point, now), _number(point))
    elif data == "histogram":
        name = metric_name(metric.name, metric.unit)
        delta = metric.histogram.aggregation_temporality == DELTA
        for point in metric.histogram.data_points:
            if point.flags & NO_RECORDED_VALUE:
                columns.dropped += 1
                continue
            labels, stamp = _point_labels(base, point.attributes), _stamp(point, now)
            running = 0
            for bound, count in zip(point.explicit_bounds, point.bucket_counts, strict=False):
                running += count
                columns.add(f"{name}_bucket", {**labels, "le": go_float(bound)}, counter, delta, stamp, running)
            columns.add(f"{name}_bucket", {**labels, "le": "+Inf"}, counter, delta, stamp, point.count)
            if point.HasField("sum"):
                columns.add(f"{name}_sum", labels, counter, delta, stamp, point.sum)
            columns.add(f"{name}_count", labels, counter, delta, stamp, point.count)
    elif data == "summary":
        name = metric_name(metric.name, metric.unit)
        for point in metric.summary.data_points:
            if point.flags & NO_RECORDED_VALUE:
                columns.dropped += 1
                continue
            labels, stamp = _point_labels(base, point.attributes), _stamp(point, now)
            for quantile in point.quantile_values:
                quantile_labels = {**labels, "quantile": go_float(quantile.quantile)}
                columns.add(name, quantile_labels, gauge, False, stamp, quantile.value)
            columns.add(f"{name}_sum", labels, counter, False, stamp, point.sum)
            columns.add(f"{name}_count", labels, counter, False, stamp, point.count)
    elif data == "exponential_histogram":
        return len(metric.exponential_histogram.data_points)
    return 0


@registry.plugin("protocols")
class Otlp(Receiver):
    kind = "otlp"
    label = "OpenTelemetry OTLP/HTTP metrics"
    path = "otlp/v1/metrics"

    def decode(self, *, body: bytes, content_type: str, content_encoding: str) -> Decoded:
        media = media_type(content_type)
        if media not in (PROTOBUF, JSON):
            raise UnsupportedMediaType(
                f"Content-Type must be {PROTOBUF} or {JSON} (OTLP/HTTP), not {content_type!r}.", field="Content-Type"
            )
        encoding = content_encoding.strip().lower()
        if encoding == "gzip":
            body = gzip_decompress(body)
        elif encoding not in ("", "identity"):
            raise UnsupportedMediaType(
                f"Content-Encoding must be gzip or none, not {content_encoding!r}.", field="Content-Encoding"
            )
        request = ExportMetricsServiceRequest()
        try:
            if media == PROTOBUF:
                request.ParseFromString(body)
            else:
                json_format.Parse(body, request, ignore_unknown_fields=True)
        except (DecodeError, json_format.ParseError, UnicodeDecodeError) as exc:
            raise ProtocolError(f"The body is not an OTLP ExportMetricsServiceRequest: {exc}", field="body") from None
        now = time.time()
        columns = _Columns()
        rejected, refused_names = 0, []
        for resource_metrics in request.resource_metrics:
            base = _resource_labels(resource_metrics.resource)
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    refused = _add_metric(columns, metric, base, now)
                    if refused:
                        rejected += refused
                        refused_names.append(metric.name)
        message = ""
        if rejected:
            message = f"Exponential histograms are not supported; rejected: {', '.join(sorted(set(refused_names)))}."
        return columns.decoded(rejected=rejected, message=message)

    def accepted(self, *, decoded: Decoded, content_type: str):
        response = ExportMetricsServiceResponse()
        if decoded.rejected:
            response.partial_success.CopyFrom(
                ExportMetricsPartialSuccess(rejected_data_points=decoded.rejected, error_message=decoded.message)
            )
        return _answer(response, content_type, 200)

    def refused(self, *, error: InvalidInput, content_type: str):
        code = code_pb2.INVALID_ARGUMENT if error.status_code == 400 else code_pb2.FAILED_PRECONDITION
        status = status_pb2.Status(code=code, message=str(error))
        if media_type(content_type) not in (PROTOBUF, JSON):
            content_type = JSON
        return _answer(status, content_type, error.status_code)


def _answer(message, content_type: str, status: int):
    from django.http import HttpResponse

    if media_type(content_type) == PROTOBUF:
        return HttpResponse(message.SerializeToString(), content_type=PROTOBUF, status=status)
    return HttpResponse(json_format.MessageToJson(message, indent=None), content_type=JSON, status=status)
