"""What a protocol receiver is: it decodes a request body into sample columns, and answers.

A receiver module registers one class in the registry's `protocols` category:

    @registry.plugin("protocols")
    class RemoteWrite(Receiver):
        kind = "remote_write"

Hooks: `decode(body=..., content_type=..., content_encoding=...)` returns a Decoded (or raises
ProtocolError, which stores nothing); `accepted(decoded=..., content_type=...)` is the success
answer and `refused(error=..., content_type=...)` the error answer, both in the protocol's own
format. monitoring.protocol_views authenticates, calls them, and writes the columns through
monitoring.services.ingest.samples_ingest_columns, the push API's bulk path.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, field

import numpy as np
from django.conf import settings
from django.http import HttpResponse, JsonResponse

from core.errors import InvalidInput
from monitoring.storage import SeriesSpec

METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
METRIC_MAX = 200  # monitoring.Series.metric
LABELS_KEY_MAX = 1000  # monitoring.Series.labels_key


class ProtocolError(InvalidInput):
    """A request the receiver refuses as a whole: 400 unless a subclass says otherwise."""


class UnsupportedMediaType(ProtocolError):
    status_code = 415


class DecodedTooLarge(ProtocolError):
    status_code = 413


@dataclass
class Decoded:
    """Sample columns: specs[i] owns the next counts[i] entries of stamps (Unix seconds) and values."""

    specs: list[SeriesSpec] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)
    stamps: np.ndarray = field(default_factory=lambda: np.empty(0))
    values: np.ndarray = field(default_factory=lambda: np.empty(0))
    deltas: list[bool] | None = None  # per spec: values are increments (OTLP delta temporality)
    labels_keys: list[str] | None = None  # per spec, when the decoder computed them
    dropped: int = 0  # samples left out on purpose (stale markers, NaN), not an error
    rejected: int = 0  # data points the receiver could not take (reported back, not an error)
    message: str = ""  # why some were rejected


class Receiver:
    kind: str = ""
    label: str = ""
    path: str = ""  # where config/urls.py mounts it

    def decode(self, *, body: bytes, content_type: str, content_encoding: str) -> Decoded:
        raise NotImplementedError

    def accepted(self, *, decoded: Decoded, content_type: str) -> HttpResponse:
        return HttpResponse(status=204)

    def refused(self, *, error: InvalidInput, content_type: str) -> HttpResponse:
        return JsonResponse({"detail": str(error), "field": error.field}, status=error.status_code)


def media_type(content_type: str) -> str:
    """`application/x-protobuf; proto=...` -> `application/x-protobuf`."""
    return content_type.split(";", 1)[0].strip().lower()


def decoded_limit() -> int:
    """The most bytes a compressed body may expand to: the same limit as a push body."""
    return settings.PERFPILOT_MAX_INGEST_BYTES


def snappy_block_decompress(body: bytes) -> bytes:
    """Snappy's block format, its declared length checked against the limit before expanding it."""
    import cramjam

    if not body:
        raise ProtocolError("The body is empty; remote write sends snappy-compressed protobuf.", field="body")
    length, shift = 0, 0
    for byte in body[:10]:  # the uncompressed length, a varint
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    else:
        raise ProtocolError("The body is not valid snappy block data: its length header is cut short.", field="body")
    if length > decoded_limit():
        raise DecodedTooLarge(
            f"The body expands to {length:,} bytes, more than the {decoded_limit():,} this endpoint takes.",
            field="body",
        )
    try:
        return bytes(cramjam.snappy.decompress_raw(body))
    except Exception as exc:  # cramjam raises its own DecompressionError
        raise ProtocolError(f"The body is not valid snappy block data: {exc}.", field="body") from None


def gzip_decompress(body: bytes) -> bytes:
    limit = decoded_limit()
    try:
        inflater = zlib.decompressobj(wbits=zlib.MAX_WBITS | 32)  # gzip or zlib header
        data = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise ProtocolError(f"The body is not valid gzip data: {exc}.", field="body") from None
    if len(data) > limit or inflater.unconsumed_tail:
        raise DecodedTooLarge(f"The body expands to more than the {limit:,} bytes this endpoint takes.", field="body")
    return data


_valid_names: set[str] = set()  # metric and label names already checked, so most series skip the regexes
_VALID_NAMES_MAX = 100_000


def _remember(name: str) -> None:
    if len(_valid_names) >= _VALID_NAMES_MAX:
        _valid_names.clear()
    _valid_names.add(name)


def check_series(metric: str, labels: dict[str, str], key: str) -> None:
    """Refuse a series whose metric name or labels Perfpilot cannot store or Prometheus would refuse."""
    if f"\0{metric}" not in _valid_names:  # metric names are kept apart: they may hold ':'
        if not METRIC_NAME.fullmatch(metric):
            raise ProtocolError(f"Invalid metric name {metric!r}.", field="labels")
        if len(metric) > METRIC_MAX:
            raise ProtocolError(
                f"Metric name {metric[:40]!r}... is longer than {METRIC_MAX} characters.", field="labels"
            )
        _remember(f"\0{metric}")
    for name in labels:
        if name not in _valid_names:
            if not LABEL_NAME.fullmatch(name):
                raise ProtocolError(f"{metric}: invalid label name {name!r}.", field="labels")
            _remember(name)
    if len(key) > LABELS_KEY_MAX:
        raise ProtocolError(f"{metric}: the labels are longer than {LABELS_KEY_MAX} characters in all.", field="labels")
