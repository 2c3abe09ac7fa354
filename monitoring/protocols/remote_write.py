"""Prometheus remote write 1.0: a snappy-compressed (block format) protobuf `prometheus.WriteRequest`.

Each time series becomes a Perfpilot series with no target: `__name__` is its metric, the other
labels are kept as they came (`job` and `instance` included). Samples are stored as sent, with the
kind `counter` when the name ends in `_total`, `_count`, `_sum` or `_bucket` (rates are computed
when read), `gauge` otherwise. Dropped on purpose, as Prometheus's own storage does not keep them as
values: stale markers (the NaN 0x7ff0000000000002 that ends a series) and, since Perfpilot stores
finite numbers only, any other NaN or infinity. Labels with an empty value are absent, as in
Prometheus. Native histograms and exemplars are not stored.
"""

from __future__ import annotations

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

from core.registry import registry
from monitoring.models import Series
from monitoring.protocols.base import (
    Decoded,
    ProtocolError,
    Receiver,
    UnsupportedMediaType,
    check_series,
    media_type,
    snappy_block_decompress,
)
from monitoring.storage import SeriesSpec, labels_key

COUNTER_SUFFIXES = ("_total", "_count", "_sum", "_bucket")


def _message_class():
    """prometheus.WriteRequest (prompb/remote.proto and types.proto), only the fields we read.

    Built from a descriptor in Python: no generated module, no protoc. Fields not declared
    (metadata, exemplars, histogram contents) are skipped by the parser.
    """
    f = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(name="perfpilot/prompb.proto", package="prometheus", syntax="proto3")

    def message(name: str, *fields: tuple[str, int, int, int, str]) -> None:
        m = proto.message_type.add(name=name)
        for field_name, number, kind, label, type_name in fields:
            added = m.field.add(name=field_name, number=number, type=kind, label=label)
            if type_name:
                added.type_name = type_name

    one, many = f.LABEL_OPTIONAL, f.LABEL_REPEATED
    message("Label", ("name", 1, f.TYPE_STRING, one, ""), ("value", 2, f.TYPE_STRING, one, ""))
    message("Sample", ("value", 1, f.TYPE_DOUBLE, one, ""), ("timestamp", 2, f.TYPE_INT64, one, ""))
    message("Histogram")
    message(
        "TimeSeries",
        ("labels", 1, f.TYPE_MESSAGE, many, ".prometheus.Label"),
        ("samples", 2, f.TYPE_MESSAGE, many, ".prometheus.Sample"),
        ("histograms", 4, f.TYPE_MESSAGE, many, ".prometheus.Histogram"),
    )
    message("WriteRequest", ("timeseries", 1, f.TYPE_MESSAGE, many, ".prometheus.TimeSeries"))
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("prometheus.WriteRequest"))


WriteRequest = _message_class()


def write_request_encode(series: list[tuple[dict[str, str], list[tuple[float, int]]]]) -> bytes:
    """A snappy-compressed WriteRequest of (labels with __name__, [(value, timestamp ms)]): for tests and bench."""
    import cramjam

    request = WriteRequest()
    for labels, samples in series:
        ts = request.timeseries.add()
        for name in sorted(labels):
            ts.labels.add(name=name, value=labels[name])
        for value, stamp in samples:
            ts.samples.add(value=value, timestamp=stamp)
    return bytes(cramjam.snappy.compress_raw(request.SerializeToString()))


@registry.plugin("protocols")
class RemoteWrite(Receiver):
    kind = "remote_write"
    label = "Prometheus remote write 1.0"
    path = "prometheus/api/v1/write"

    def decode(self, *, body: bytes, content_type: str, content_encoding: str) -> Decoded:
        if media_type(content_type) != "application/x-protobuf":
            raise UnsupportedMediaType(
                f"Content-Type must be application/x-protobuf (remote write 1.0), not {content_type!r}.",
                field="Content-Type",
            )
        if content_encoding.strip().lower() not in ("snappy", ""):
            raise UnsupportedMediaType(
                f"Content-Encoding must be snappy, not {content_encoding!r}.", field="Content-Encoding"
            )
        request = WriteRequest()
        try:
            request.ParseFromString(snappy_block_decompress(body))
        except DecodeError as exc:
            raise ProtocolError(f"The body is not a protobuf WriteRequest: {exc}.", field="body") from None
        specs: list[SeriesSpec] = []
        keys: list[str] = []
        counts: list[int] = []
        stamps: list[int] = []
        values: list[float] = []
        for index, ts in enumerate(request.timeseries):
            metric = ""
            labels: dict[str, str] = {}
            for label in ts.labels:
                name, value = label.name, label.value
                if name == "__name__":
                    if metric:
                        raise ProtocolError(f"timeseries[{index}]: duplicate label name '__name__'.", field="labels")
                    metric = value
                    continue
                if name in labels:
                    raise ProtocolError(f"timeseries[{index}]: duplicate label name {name!r}.", field="labels")
                if value:
                    labels[name] = value
            if not metric:
                raise ProtocolError(f"timeseries[{index}]: the label __name__ is missing or empty.", field="labels")
            samples = ts.samples
            if not samples:
                continue
            key = labels_key(labels)
            check_series(metric, labels, key)
            kind = Series.Kind.COUNTER if metric.endswith(COUNTER_SUFFIXES) else Series.Kind.GAUGE
            specs.append(SeriesSpec(metric, labels, kind))
            keys.append(key)
            counts.append(len(samples))
            for sample in samples:
                stamps.append(sample.timestamp)
                values.append(sample.value)
        return _finite_only(specs, keys, counts, np.asarray(stamps, dtype=np.float64) / 1000.0, np.asarray(values))


def _finite_only(
    specs: list[SeriesSpec], keys: list[str], counts: list[int], stamps: np.ndarray, values: np.ndarray
) -> Decoded:
    """Leave out stale markers and other non-finite values (and the series left with no sample)."""
    keep = np.isfinite(values)
    if keep.all():
        return Decoded(specs=specs, labels_keys=keys, counts=counts, stamps=stamps, values=values.astype(np.float64))
    owner = np.repeat(np.arange(len(specs)), counts)
    kept_counts = np.bincount(owner[keep], minlength=len(specs))
    return Decoded(
        specs=[spec for spec, n in zip(specs, kept_counts, strict=True) if n],
        labels_keys=[key for key, n in zip(keys, kept_counts, strict=True) if n],
        counts=[int(n) for n in kept_counts if n],
        stamps=stamps[keep],
        values=values[keep].astype(np.float64),
        dropped=int((~keep).sum()),
    )
