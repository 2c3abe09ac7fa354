"""Request bodies over their limit are a 413 in JSON before anything reads them.

Django's own limit (DATA_UPLOAD_MAX_MEMORY_SIZE) raises RequestDataTooBig from wherever the body
is first read, which inside an API view became a 500; and a chunked body without Content-Length
was not read at all under WSGI (Django reads Content-Length bytes: none). This middleware, first
in the chain, checks the declared length, reads a chunked body itself up to the limit, and answers
413 naming the limit. Most endpoints take PERFPILOT_MAX_REQUEST_BYTES; paths listed in
settings.REQUEST_BODY_LIMITS (push ingestion) take theirs.
"""

from __future__ import annotations

import logging
from io import BytesIO

from django.conf import settings
from django.core.handlers.wsgi import LimitedStream
from django.http import HttpRequest, HttpResponse, JsonResponse

logger = logging.getLogger(__name__)

# A refused body is read and dropped up to this size, so that the client, still sending, gets the
# 413 rather than a reset connection; past it the connection is closed unread.
DRAIN_BYTES = 64 * 1024 * 1024
_CHUNK = 1024 * 1024


def body_limit_for(path: str) -> int:
    return settings.REQUEST_BODY_LIMITS.get(path, settings.PERFPILOT_MAX_REQUEST_BYTES)


def _too_large(request: HttpRequest, limit: int) -> HttpResponse:
    logger.warning("refused a request body over %d bytes on %s %s", limit, request.method, request.path)
    response = JsonResponse(
        {"detail": f"The request body is larger than the {limit:,} bytes this endpoint takes.", "field": "body"},
        status=413,
    )
    response["Connection"] = "close"
    return response


def _drain(stream, size: int | None) -> None:
    remaining = DRAIN_BYTES if size is None else min(size, DRAIN_BYTES)
    try:
        while remaining > 0:
            chunk = stream.read(min(_CHUNK, remaining))
            if not chunk:
                return
            remaining -= len(chunk)
    except OSError:
        return  # the client went away: nothing to answer


class RequestBodyLimitMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        limit = body_limit_for(request.path_info)
        declared = request.META.get("CONTENT_LENGTH")
        chunked = "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower()
        wsgi_input = getattr(request, "environ", {}).get("wsgi.input")
        if declared:
            try:
                size = int(declared)
            except ValueError:
                return JsonResponse({"detail": "Content-Length is not a number.", "field": "body"}, status=400)
            if size > limit:
                if wsgi_input is not None:
                    _drain(wsgi_input, size)
                return _too_large(request, limit)
        elif chunked and wsgi_input is not None:
            body = wsgi_input.read(limit + 1)
            if len(body) > limit:
                _drain(wsgi_input, None)
                return _too_large(request, limit)
            # Django reads Content-Length bytes of a WSGI body: hand it the body that came.
            request._stream = LimitedStream(BytesIO(body), len(body))
            request.META["CONTENT_LENGTH"] = str(len(body))
        return self.get_response(request)
