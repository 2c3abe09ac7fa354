from __future__ import annotations

import pytest
from django.http import HttpRequest
from django.test import RequestFactory
from django_htmx.middleware import HtmxMiddleware

from core.htmx import requested_fragment

HTMX = {"HTTP_HX_REQUEST": "true"}


def _request(query: str, headers: dict) -> HttpRequest:
    request = RequestFactory().get(f"/{query}", **headers)
    HtmxMiddleware(lambda request: None)(request)  # sets request.htmx, as on every page
    return request


def test_an_htmx_request_gets_the_fragment_it_names_when_the_page_serves_it():
    assert requested_fragment(_request("?fragment=live", HTMX), "live", "log") == "live"


@pytest.mark.parametrize(
    "query,headers",
    [("?fragment=live", {}), ("?fragment=nav", HTMX), ("", HTMX)],
    ids=["plain request", "fragment the page does not serve", "no fragment named"],
)
def test_other_requests_get_the_whole_page(query, headers):
    assert requested_fragment(_request(query, headers), "live", "log") is None


@pytest.mark.django_db
def test_a_plain_request_naming_a_fragment_gets_the_whole_page(viewer_client):
    html = viewer_client.get("/?fragment=health").content.decode()
    assert "<nav" in html and 'id="health"' in html and 'id="targets"' in html


@pytest.mark.django_db
def test_an_htmx_request_for_a_fragment_the_page_does_not_serve_gets_the_whole_page(viewer_client):
    response = viewer_client.get("/?fragment=nav", **HTMX)
    html = response.content.decode()
    assert response.status_code == 200
    assert "<nav" in html and 'data-testid="overall-status"' in html and 'id="targets"' in html
