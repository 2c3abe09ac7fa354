"""Gzip for HTML pages only.

Pages carry their charts' data as JSON inside the HTML (an Overview with an hour of history is about
350 KB, sent again by every live refresh), so they are worth compressing. API and /metrics answers stay
as they were: they are small, and automation reads them with clients of every kind, some of which ask for
gzip without decoding it. Static files never get here: whitenoise answers them first with their own
precompressed copies.
"""

from __future__ import annotations

from django.middleware.gzip import GZipMiddleware


class PageGZipMiddleware(GZipMiddleware):
    """Django's GZipMiddleware (with its random padding against BREACH), for text/html responses only."""

    def process_response(self, request, response):
        if not response.get("Content-Type", "").startswith("text/html"):
            return response
        return super().process_response(request, response)
