"""Prometheus's HTTP query API under /prometheus/api/v1/, for Grafana's stock Prometheus datasource.

Viewers may read, with `Authorization: Bearer <API token>` (or a signed-in session). Answers and
errors are in Prometheus's JSON format: {"status": "success", "data": ...} or
{"status": "error", "errorType": "bad_data", "error": "..."} with a 400.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import promql_parser as pp
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from core.roles import VIEWER, ensure_role
from core.services import api_token_user_from_header
from monitoring.promql import data
from monitoring.promql.engine import _MATCH_OPS, evaluate_instant, evaluate_range
from monitoring.promql.errors import PromQLError
from monitoring.promql.http import EncodedJSON, duration_param, instant_data, range_data, time_param

BUILD_INFO = {
    "version": "2.42.0",
    "revision": "perfpilot",
    "branch": "perfpilot",
    "buildUser": "perfpilot",
    "buildDate": "20230201-00:00:00",
    "goVersion": "go1.19",
}
_METADATA_TYPE = {"counter": "counter", "gauge": "gauge", "rate": "gauge"}


def _error(message: str, *, error_type: str = "bad_data", status: int = 400) -> JsonResponse:
    return JsonResponse({"status": "error", "errorType": error_type, "error": message}, status=status)


def _success(payload) -> HttpResponse:
    if isinstance(payload, EncodedJSON):
        return HttpResponse(b'{"status":"success","data":' + payload + b"}", content_type="application/json")
    return JsonResponse({"status": "success", "data": payload}, safe=False)


def prometheus_view(handler: Callable[[HttpRequest, dict], object]):
    """A read endpoint: authenticate a viewer, merge GET and form POST parameters, answer as Prometheus."""

    @csrf_exempt
    @login_not_required
    @require_http_methods(["GET", "POST"])
    def view(request: HttpRequest, **kwargs) -> HttpResponse:
        user = request.user if request.user.is_authenticated else None
        if user is None:
            user = api_token_user_from_header(request.headers.get("Authorization", ""))
        if user is None:
            response = _error(
                "authentication required: send Authorization: Bearer <API token>", error_type="unauthorized", status=401
            )
            response["WWW-Authenticate"] = "Bearer"
            return response
        try:
            ensure_role(user, VIEWER)
        except PermissionDenied as exc:
            return _error(str(exc), error_type="forbidden", status=403)
        params = request.POST if request.method == "POST" else request.GET
        try:
            return _success(handler(params, **kwargs))
        except PromQLError as exc:
            return _error(str(exc), error_type=exc.error_type, status=ERROR_STATUS.get(exc.error_type, 400))

    view.__name__ = handler.__name__
    return view


# Prometheus's statuses per errorType (web/api/v1): bad_data 400, execution 422, timeout 503.
ERROR_STATUS = {"bad_data": 400, "execution": 422, "timeout": 503}


def _now_ms() -> int:
    return round(time.time() * 1000)


def _query(params) -> dict:
    expression = params.get("query") or ""
    if not expression:
        raise PromQLError('invalid parameter "query": missing')
    at = time_param(params.get("time"), name="time", default_ms=_now_ms())
    kind, value = evaluate_instant(expression, time_ms=at)
    return instant_data(kind, value, at)


def _query_range(params) -> EncodedJSON:
    expression = params.get("query") or ""
    if not expression:
        raise PromQLError('invalid parameter "query": missing')
    start = time_param(params.get("start"), name="start")
    end = time_param(params.get("end"), name="end")
    if end < start:
        raise PromQLError('invalid parameter "end": end timestamp must not be before start time')
    step = duration_param(params.get("step"), name="step")
    return range_data(evaluate_range(expression, start_ms=start, end_ms=end, step_ms=step))


def _selectors(params) -> list[list[data.Matcher]] | None:
    raw = params.getlist("match[]")
    if not raw:
        return None
    selectors = []
    for text in raw:
        try:
            node = pp.parse(text)
        except (ValueError, RuntimeError) as exc:
            raise PromQLError(f'invalid parameter "match[]": {exc}') from None
        if not isinstance(node, pp.VectorSelector):
            raise PromQLError(f'invalid parameter "match[]": {text!r} is not a series selector')
        matchers = [data.Matcher(m.name, _MATCH_OPS[str(m.op)], m.value) for m in node.matchers.matchers]
        if node.name:
            matchers.insert(0, data.Matcher("__name__", "=", node.name))
        selectors.append(matchers)
    return selectors


def _range(params) -> tuple[int | None, int | None]:
    start = time_param(params.get("start"), name="start", default_ms=-1)
    end = time_param(params.get("end"), name="end", default_ms=-1)
    return (None if start == -1 else start), (None if end == -1 else end)


def _series(params) -> list[dict[str, str]]:
    selectors = _selectors(params)
    if selectors is None:
        raise PromQLError("no match[] parameter provided")
    start, end = _range(params)
    return data.series_find(selectors=selectors, start_ms=start, end_ms=end)


def _labels(params) -> list[str]:
    start, end = _range(params)
    names = {
        name for labels in data.series_find(selectors=_selectors(params), start_ms=start, end_ms=end) for name in labels
    }
    return sorted(names)


def _label_values(params, name: str) -> list[str]:
    start, end = _range(params)
    found = data.series_find(selectors=_selectors(params), start_ms=start, end_ms=end)
    return sorted({labels[name] for labels in found if labels.get(name)})


def _metadata(params) -> dict:
    wanted = params.get("metric")
    kinds = data.metric_kinds()
    return {
        metric: [{"type": _METADATA_TYPE.get(kind, "unknown"), "help": "", "unit": ""} for kind in sorted(found)]
        for metric, found in sorted(kinds.items())
        if not wanted or metric == wanted
    }


def _buildinfo(params) -> dict:
    return BUILD_INFO


query = prometheus_view(_query)
query_range = prometheus_view(_query_range)
series = prometheus_view(_series)
labels = prometheus_view(_labels)
label_values = prometheus_view(_label_values)
metadata = prometheus_view(_metadata)
buildinfo = prometheus_view(_buildinfo)
