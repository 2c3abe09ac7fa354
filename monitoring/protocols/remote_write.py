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


def _message_classes():
    """prometheus.WriteRequest (prompb/remote.proto and types.proto), only the fields we read.

    Built from a descriptor in Python: no generated module, no protoc. Fields not declared
    (metadata, exemplars, histogram contents) are skipped by the parser. RawWriteRequest reads the
    same bytes with each label and sample left encoded (a message field is bytes on the wire): the
    receiver's fast path, which decodes a label set once per process and samples in numpy.
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
    message("RawTimeSeries", ("labels", 1, f.TYPE_BYTES, many, ""), ("samples", 2, f.TYPE_BYTES, many, ""))
    message("RawWriteRequest", ("timeseries", 1, f.TYPE_MESSAGE, many, ".prometheus.RawTimeSeries"))
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    names = ("WriteRequest", "RawWriteRequest", "Label", "Sample")
    return [message_factory.GetMessageClass(pool.FindMessageTypeByName(f"prometheus.{name}")) for name in names]


WriteRequest, RawWriteRequest, Label, Sample = _message_classes()
_SERIES_CACHE_MAX = 100_000
# Encoded label set -> (spec, labels_key), for label sets already decoded and checked in this process.
_series_by_labels: dict[tuple[bytes, ...], tuple[SeriesSpec, str]] = {}
_VARINT_SHIFTS = np.arange(6, dtype=np.uint64) * np.uint64(7)


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
        request = RawWriteRequest()
        try:
            request.ParseFromString(snappy_block_decompress(body))
        except DecodeError as exc:
            raise ProtocolError(f"The body is not a protobuf WriteRequest: {exc}.", field="body") from None
        specs: list[SeriesSpec] = []
        keys: list[str] = []
        counts: list[int] = []
        samples: list[bytes] = []
        for index, ts in enumerate(request.timeseries):
            raw_labels = tuple(ts.labels)
            known = _series_by_labels.get(raw_labels)
            if known is None:
                known = _series_by_labels_put(raw_labels, _series(index, raw_labels))
            if not ts.samples:
                continue
            specs.append(known[0])
            keys.append(known[1])
            counts.append(len(ts.samples))
            samples.extend(ts.samples)
        stamps, values = _samples(samples)
        return _finite_only(specs, keys, counts, stamps / 1000.0, values)


def _series_by_labels_put(raw_labels: tuple[bytes, ...], known: tuple[SeriesSpec, str]) -> tuple[SeriesSpec, str]:
    if len(_series_by_labels) >= _SERIES_CACHE_MAX:
        _series_by_labels.clear()
    _series_by_labels[raw_labels] = known
    return known


def _series(index: int, raw_labels: tuple[bytes, ...]) -> tuple[SeriesSpec, str]:
    """Decode and check one encoded label set: its series spec and labels_key."""
    metric = ""
    labels: dict[str, str] = {}
    for raw in raw_labels:
        try:
            label = Label.FromString(raw)
        except DecodeError as exc:
            raise ProtocolError(f"timeseries[{index}]: a label is not valid protobuf: {exc}.", field="labels") from None
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
    key = labels_key(labels)
    check_series(metric, labels, key)
    kind = Series.Kind.COUNTER if metric.endswith(COUNTER_SUFFIXES) else Series.Kind.GAUGE
    return SeriesSpec(metric, labels, kind), key


def _samples(raw: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """(timestamps in ms, values) of encoded Sample messages.

    Nearly every sample Prometheus sends is 16 bytes: tag 0x09, the value as 8 little-endian bytes,
    tag 0x10, the millisecond timestamp as a 6-byte varint (2005 to 2109); or 7, when the value is 0
    and so left out. Those are decoded as columns; any other (an older timestamp is shorter, fields
    repeated or unknown) by protobuf.
    """
    count = len(raw)
    lengths = np.fromiter(map(len, raw), dtype=np.int64, count=count)
    blob = np.frombuffer(b"".join(raw), dtype=np.uint8)
    stamps = np.empty(count, dtype=np.int64)
    values = np.empty(count, dtype=np.float64)
    starts = np.cumsum(lengths) - lengths
    fast = np.zeros(count, dtype=bool)
    # (length, offset of the timestamp's tag): with the value, and without it (a value of 0).
    for length, at in ((16, 9), (7, 0)):
        candidates = np.flatnonzero(lengths == length)
        rows = blob[starts[candidates][:, None] + np.arange(length)]
        varint = rows[:, at + 1 :]
        layout = (rows[:, at] == 0x10) & (varint[:, :5] >= 0x80).all(axis=1) & (varint[:, 5] < 0x80)
        if at:
            layout &= rows[:, 0] == 0x09
        chosen, rows, varint = candidates[layout], rows[layout], varint[layout]
        fast[chosen] = True
        values[chosen] = rows[:, 1:9].copy().view("<f8").ravel() if at else 0.0
        stamps[chosen] = ((varint.astype(np.uint64) & np.uint64(0x7F)) << _VARINT_SHIFTS).sum(axis=1)
    for position in np.flatnonzero(~fast):
        try:
            sample = Sample.FromString(raw[position])
        except DecodeError as exc:
            raise ProtocolError(f"A sample is not valid protobuf: {exc}.", field="body") from None
        stamps[position], values[position] = sample.timestamp, sample.value
    return stamps, values


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
