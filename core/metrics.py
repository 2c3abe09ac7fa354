"""Prometheus metrics of the control plane's own HTTP traffic, and the /metrics exposition.

Under gunicorn each worker process keeps its own counters; with PROMETHEUS_MULTIPROC_DIR set
(as `make run` does) the exposition merges them, so a scrape sees the whole server.
"""

from __future__ import annotations

import os
import time

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client import REGISTRY as DEFAULT_REGISTRY

REQUESTS = Counter(
    "perfpilot_http_requests_total",
    "HTTP requests served, by method, route and status code.",
    ["method", "route", "status"],
)
LATENCY = Histogram(
    "perfpilot_http_request_duration_seconds",
    "Time to serve an HTTP request, by method and route.",
    ["method", "route"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)


def _route_of(request: HttpRequest) -> str:
    # The URL pattern, not the path: label values stay bounded whatever clients request.
    match = getattr(request, "resolver_match", None)
    if match is not None:
        return "/" + match.route
    if request.path.startswith("/" + settings.STATIC_URL.lstrip("/")):
        return "/static/"  # answered by WhiteNoise before URL resolution
    return "<unmatched>"


class RequestMetricsMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        route = _route_of(request)
        LATENCY.labels(request.method, route).observe(time.perf_counter() - started)
        REQUESTS.labels(request.method, route, str(response.status_code)).inc()
        return response


def metrics_exposition(*, extra_collectors: tuple = ()) -> tuple[bytes, str]:
    """Our own request metrics plus, from extra_collectors, values read at scrape time."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        own = CollectorRegistry()
        multiprocess.MultiProcessCollector(own)
    else:
        own = DEFAULT_REGISTRY
    payload = generate_latest(own)
    if extra_collectors:
        scrape_time = CollectorRegistry(auto_describe=False)
        for collector in extra_collectors:
            scrape_time.register(collector)
        payload += generate_latest(scrape_time)
    return payload, CONTENT_TYPE_LATEST
