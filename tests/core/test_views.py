from __future__ import annotations

import json
import re

import plotly.graph_objects as go
import pytest

from core.charts import figure_json, health_latency_figure
from core.health import CheckResult
from core.heartbeat import beat_heartbeat_write, scheduler_heartbeat_write, worker_heartbeat_write

pytestmark = pytest.mark.django_db


def test_overview_shows_each_component_and_the_assets_are_local(viewer_client):
    worker_heartbeat_write("w@h")
    beat_heartbeat_write()
    scheduler_heartbeat_write("host:1")
    response = viewer_client.get("/")
    assert response.status_code == 200
    html = response.content.decode()
    for component in ("database", "redis", "worker", "beat", "scheduler"):
        assert f'data-component="{component}"' in html
    assert "/static/vendor/plotly.min.js" in html
    assert "/static/django_htmx/htmx-2.min.js" in html
    assert re.findall(r'(?:src|href)="(?:https?:)?//', html) == []  # nothing from another host


def test_overview_polls_its_health_fragment_only_while_visible(viewer_client):
    html = viewer_client.get("/").content.decode()
    # Paused while hidden by shell.js (data-poll-when-visible): a trigger filter would need eval, which the CSP forbids.
    assert 'hx-trigger="every 5s" data-poll-when-visible' in html


def test_htmx_request_gets_only_the_health_fragment(viewer_client):
    response = viewer_client.get("/?fragment=health", HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="health"')
    assert "<nav" not in html


def test_csrf_header_is_set_for_htmx_on_the_body(viewer_client):
    html = viewer_client.get("/").content.decode()
    assert '<body hx-headers=\'{"X-CSRFToken": "' in html


@pytest.mark.parametrize(
    "path,queue",
    [("/monitoring/", "collect"), ("/optimizer/", "maintenance"), ("/scaling/", "scale"), ("/alerts/", "notify")],
)
def test_section_pages_show_their_queue(viewer_client, path, queue):
    response = viewer_client.get(path)
    assert response.status_code == 200
    assert f"<code>{queue}</code>" in response.content.decode()


def test_navigation_links_every_section(viewer_client):
    html = viewer_client.get("/settings/").content.decode()
    for label in ("Overview", "Monitoring", "Optimizer", "Scaling", "Alerts", "Settings"):
        assert f">{label}</a>" in html


def test_plotly_is_served_from_our_static_files(viewer_client):
    response = viewer_client.get("/static/vendor/plotly.min.js")
    assert response.status_code == 200
    body = b"".join(response.streaming_content) if response.streaming else response.content
    assert b"plotly" in body[:2000].lower()


def test_health_latency_figure_has_one_bar_per_check_coloured_by_state():
    checks = [CheckResult("database", True, "ok", 1.5), CheckResult("redis", False, "down", 0.2)]
    figure = health_latency_figure(checks)
    go.Figure(figure)  # raises on any property plotly does not know
    bar = json.loads(figure_json(figure))["data"][0]
    assert bar["y"] == ["database", "redis"]
    assert bar["x"] == [1.5, 0.2]
    assert bar["marker"]["color"][0] != bar["marker"]["color"][1]


def test_unknown_page_is_a_404_in_the_site_layout_with_navigation(viewer_client):
    response = viewer_client.get("/no-such-page/")
    assert response.status_code == 404
    html = response.content.decode()
    assert "This page does not exist" in html and "/no-such-page/" in html
    assert 'aria-label="Main"' in html  # the signed-in user keeps the menu
    assert 'href="/monitoring/"' in html


def test_forbidden_page_names_the_role_in_the_site_layout(viewer_client):
    response = viewer_client.post("/monitoring/", {"name": "x", "kind": "host"})
    assert response.status_code == 403
    html = response.content.decode()
    assert "Your role may not do this" in html
    assert "with the role <strong>viewer</strong>" in html
    assert 'aria-label="Main"' in html


def test_server_error_page_renders_without_a_request_or_database():
    from django.template import Context
    from django.template.loader import get_template

    # Django renders 500.html with an empty Context: no user, no request, no context processors.
    html = get_template("500.html").template.render(Context())
    assert "Something went wrong on our side" in html
    assert 'class="brand"' in html and "/static/css/perfpilot.css" in html
    assert 'aria-label="Main"' not in html


def test_unavailable_page_names_the_component_that_is_down():
    from django.template import Context
    from django.template.loader import get_template

    html = get_template("503.html").template.render(Context({"component": "Redis"}))
    assert "Redis is unavailable" in html and "/readyz" in html


def test_favicon_ico_leads_to_the_svg_icon_without_a_session(anonymous_client):
    response = anonymous_client.get("/favicon.ico")
    assert response.status_code == 302
    assert response.url.endswith(".svg") and "/static/img/perfpilot" in response.url
    assert anonymous_client.get(response.url).status_code == 200


def test_relative_times_under_a_minute_say_just_now():
    from datetime import timedelta

    from django.utils import timezone

    from core.templatetags.relative_time import ago

    assert ago(timezone.now() - timedelta(seconds=5)) == "just now"
    assert (
        ago(timezone.now() - timedelta(minutes=5, seconds=2)) == "5\xa0minutes ago"
    )  # timesince keeps number and unit together
    assert ago(None) == ""
