from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def test_metrics_count_requests_by_route_and_status(anonymous_client, viewer_auth):
    anonymous_client.get("/healthz")
    response = anonymous_client.get("/metrics", **viewer_auth)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    text = response.content.decode()
    assert 'perfpilot_http_requests_total{method="GET",route="/healthz",status="200"}' in text
    assert 'perfpilot_http_request_duration_seconds_bucket{le="0.005",method="GET",route="/healthz"}' in text


def test_metrics_labels_use_the_route_pattern_not_the_raw_path(anonymous_client, viewer_auth):
    anonymous_client.delete("/api/v1/tokens/424242", **viewer_auth)
    text = anonymous_client.get("/metrics", **viewer_auth).content.decode()
    assert "424242" not in text
    assert 'route="/api/v1/tokens/<int:token_id>"' in text


def test_root_and_static_requests_get_readable_route_labels(viewer_client):
    viewer_client.get("/")
    viewer_client.get("/static/css/perfpilot.css")
    text = viewer_client.get("/metrics").content.decode()
    assert 'perfpilot_http_requests_total{method="GET",route="/",status="200"}' in text
    assert 'route="/static/",status="200"' in text


def test_metrics_accept_a_browser_session(viewer_client):
    assert viewer_client.get("/metrics").status_code == 200
