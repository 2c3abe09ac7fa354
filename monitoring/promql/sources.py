"""Where a PromQL rule's expression is evaluated: Perfpilot's own store (the engine in this package),
or an external Prometheus-compatible query API (monitoring.models.PromQLSource) reached through
core.outbound's policy.

Alert rules and scaling rules call only these two functions, so both read every source the same way:
    instant_vector(expression, time_ms=..., source=None) -> [(labels, value)]
    range_matrix(expression, start_ms=..., end_ms=..., step_ms=..., source=None) -> [(labels, [(t ms, value)])]
and check an expression when it is saved with expression_check(expression, source=None).
A scalar result comes back as one element with empty labels. A query the expression's author got wrong
raises PromQLError (a 4xx for the API); a source that cannot answer raises SourceUnavailable.
"""

from __future__ import annotations

import contextlib
import json
import math
import urllib.error
import urllib.parse
import urllib.request

from core.outbound import OutboundRefused, http_error_head, http_open
from monitoring.promql.engine import Evaluator, evaluate_instant, evaluate_range, parse, result_type
from monitoring.promql.errors import PromQLError

Labels = dict[str, str]

MAX_ANSWER_BYTES = 32 * 1024 * 1024


class SourceUnavailable(Exception):
    """The external server did not answer, or answered with something that is not a query result."""


def expression_check(expression: str, *, source=None) -> None:
    """Raise PromQLError unless the expression parses and gives an instant vector or a scalar (what a
    rule compares). For Perfpilot's store also unless this engine evaluates every part of it (an
    external server may know functions this engine lacks; its own answer tells at evaluation)."""
    kind = result_type(parse(expression))
    if kind not in ("vector", "scalar"):
        shown = "range vector" if kind == "matrix" else kind
        raise PromQLError(f"the expression must give an instant vector or a scalar, not a {shown}")
    if source is None:
        Evaluator(expression, start_ms=0, end_ms=0)  # checks what the engine supports; reads nothing


def instant_vector(expression: str, *, time_ms: int, source=None) -> list[tuple[Labels, float]]:
    if source is None:
        kind, value = evaluate_instant(expression, time_ms=time_ms)
        return _instant_elements(kind, value)
    data = _external(source, "query", {"query": expression, "time": _seconds(time_ms)})
    with _answer_shape(source):
        kind, result = data.get("resultType"), data.get("result")
        if kind == "scalar":
            return [({}, _float(result[1]))]
        if kind == "vector":
            return [(dict(item["metric"]), _float(item["value"][1])) for item in result]
    raise PromQLError(f"the expression must give an instant vector or a scalar, not {kind}")


def range_matrix(
    expression: str, *, start_ms: int, end_ms: int, step_ms: int, source=None
) -> list[tuple[Labels, list[tuple[int, float]]]]:
    if source is None:
        return evaluate_range(expression, start_ms=start_ms, end_ms=end_ms, step_ms=step_ms)
    data = _external(
        source,
        "query_range",
        {"query": expression, "start": _seconds(start_ms), "end": _seconds(end_ms), "step": _seconds(step_ms)},
    )
    with _answer_shape(source):
        if data.get("resultType") != "matrix":
            raise SourceUnavailable(f"{source.name}: query_range answered {data.get('resultType')!r}, not a matrix")
        return [
            (dict(item["metric"]), [(round(float(t) * 1000), _float(v)) for t, v in item["values"]])
            for item in data["result"]
        ]


@contextlib.contextmanager
def _answer_shape(source):
    """A `data` that is not shaped as Prometheus's is the server's fault (it is not such an API), not a 500."""
    try:
        yield
    except (AttributeError, KeyError, IndexError, TypeError, ValueError) as exc:
        raise SourceUnavailable(f"{source.name}: the answer is not a Prometheus query result") from exc


def _instant_elements(kind: str, value) -> list[tuple[Labels, float]]:
    if kind == "scalar":
        return [({}, float(value))]
    if kind == "vector":
        return [(dict(labels), float(v)) for labels, v in value]
    raise PromQLError(f"the expression must give an instant vector or a scalar, not a {kind}")


def _seconds(ms: int) -> str:
    return f"{ms / 1000:.3f}"


def _float(text) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def _external(source, path: str, params: dict) -> dict:
    """POST the form to <url>/api/v1/<path> and return its `data`; the 4xx a bad query gets is a
    PromQLError carrying the server's own words, anything else SourceUnavailable."""
    url = source.url.rstrip("/") + "/api/v1/" + path
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise SourceUnavailable(f"{source.name}: the URL must be http:// or https://")
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked just above
        url,
        data=urllib.parse.urlencode(params).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
        method="POST",
    )
    if source.token:
        request.add_header("Authorization", f"Bearer {source.token}")
    try:
        with http_open(request, timeout=source.timeout_seconds) as response:
            body = response.read(MAX_ANSWER_BYTES + 1)
    except urllib.error.HTTPError as exc:
        if exc.code in (400, 422):
            raise PromQLError(f"{source.name}: {_error_text(exc)}") from exc
        raise SourceUnavailable(f"{source.name}: HTTP {exc.code} {http_error_head(exc, limit=200)}") from exc
    except OutboundRefused as exc:
        raise SourceUnavailable(f"{source.name}: {exc}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise SourceUnavailable(f"{source.name}: {getattr(exc, 'reason', exc)}") from exc
    if len(body) > MAX_ANSWER_BYTES:
        raise SourceUnavailable(f"{source.name}: the answer is larger than {MAX_ANSWER_BYTES // 2**20} MiB")
    try:
        answer = json.loads(body)
        if answer.get("status") != "success":
            raise SourceUnavailable(f"{source.name}: {answer.get('error') or 'query failed'}")
        return answer["data"]
    except (ValueError, KeyError, AttributeError, TypeError) as exc:
        raise SourceUnavailable(f"{source.name}: the answer is not a Prometheus query result") from exc


def _error_text(exc: urllib.error.HTTPError) -> str:
    try:
        return json.loads(exc.read(65536)).get("error") or f"HTTP {exc.code}"
    except (ValueError, AttributeError, OSError):
        return f"HTTP {exc.code}"
