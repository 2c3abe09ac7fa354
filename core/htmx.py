"""HTMX: one URL serves a page and its fragments (the template's `{% partialdef %}` blocks).

A request HTMX sends gets only the fragment it swaps in; a plain request (a form posted without
JavaScript, a reload) always gets the whole page.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def requested_fragment(request: HttpRequest, *served: str) -> str | None:
    """The fragment an HTMX request asks for with `?fragment=<name>`, if the page serves one by that name.

    None for a plain request or a name the page does not serve: both get the whole page.
    """
    name = request.GET.get("fragment") if request.htmx else None
    return name if name in served else None


def render_page(
    request: HttpRequest, template: str, context: dict, *, fragment: str | None = None, status: int = 200
) -> HttpResponse:
    """Renders the page `template`, or only its fragment `fragment` when HTMX sent the request."""
    if fragment is not None and request.htmx:
        template = f"{template}#{fragment}"
    return render(request, template, context, status=status)
