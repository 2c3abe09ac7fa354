from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from monitoring.models import Target

pytestmark = pytest.mark.django_db


def _bulk(count: int, *, prefix: str = "svc", **fields) -> None:
    """Targets as thousands of them would look: most up, some down, of several kinds."""
    kinds = ["postgres", "redis", "prometheus"]
    Target.objects.bulk_create(
        Target(
            name=f"{prefix}-{i:04d}",
            kind=kinds[i % 3],
            status=Target.Status.DOWN if i % 10 == 0 else Target.Status.UP,
            consecutive_failures=i if i % 10 == 0 else 0,
            last_error="connection refused" if i % 10 == 0 else "",
            **fields,
        )
        for i in range(count)
    )


def _overview_queries(client) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get("/").status_code == 200
    return len(queries)


def test_overview_queries_do_not_grow_with_the_number_of_targets(viewer_client, django_assert_max_num_queries):
    Target.objects.create(name="this-host", kind="host", builtin=True)
    Target.objects.create(name="orders-db", kind="postgres", pinned=True)
    _bulk(50)
    at_50 = _overview_queries(viewer_client)
    _bulk(450, prefix="more")
    with django_assert_max_num_queries(at_50):
        html = viewer_client.get("/").content.decode()
    assert 'data-target="this-host"' in html and 'data-target="orders-db"' in html
    assert 'data-target="svc-0001"' not in html  # the rest is summarised, not charted


def test_overview_summarises_the_other_targets_with_links_to_the_filtered_list(viewer_client):
    Target.objects.create(name="orders-db", kind="postgres", pinned=True, status="down")
    _bulk(30)
    html = viewer_client.get("/").content.decode()
    summary = html[html.index('data-testid="target-summary"') :]
    assert "30 enabled, neither built-in nor pinned" in summary
    assert re.search(r'data-status-count="down">.*?</span> 3</a>', summary)
    assert re.search(r'data-status-count="up">.*?</span> 27</a>', summary)
    assert 'data-kind-count="redis">Redis 10</a>' in summary
    worst = summary[summary.index('data-testid="worst-down"') :]
    assert worst.index("svc-0020") < worst.index("svc-0010") < worst.index("svc-0000")  # most failures first
    assert "orders-db" not in summary  # pinned: it has its own panel
    assert 'href="/monitoring/?status=down&amp;enabled=yes&amp;pinned=no"' in summary


def test_overview_charts_at_most_a_dozen_pinned_targets_and_links_the_rest(viewer_client):
    _bulk(15, prefix="pin", pinned=True)
    html = viewer_client.get("/", HTTP_HX_REQUEST="true", data={"fragment": "targets"}).content.decode()
    assert html.count('class="target-block"') == 12
    assert "3 more pinned targets not charted here" in html


def test_targets_page_paginates_and_keeps_the_filters_in_its_links(viewer_client):
    _bulk(120)
    first = viewer_client.get("/monitoring/").content.decode()
    assert first.count('href="/monitoring/targets/') == 50
    assert "120 targets · 1\N{EN DASH}50 shown" in first and "Page 1 of 3" in first
    down = viewer_client.get("/monitoring/", {"status": "down", "kind": "postgres"}).content.decode()
    assert "4 targets match" in down and down.count('href="/monitoring/targets/') == 4  # 0, 30, 60, 90
    page = viewer_client.get("/monitoring/", {"q": "svc-01", "page": "2"}).content.decode()
    assert "20 targets match" in page and "svc-0100" in page  # one page of 20: a page past it shows the last
    more = viewer_client.get("/monitoring/", {"enabled": "yes", "page": "2"}).content.decode()
    assert 'href="?enabled=yes&amp;page=3" rel="next"' in more and "svc-0050" in more


def test_targets_page_says_which_filter_is_wrong(viewer_client):
    _bulk(3)
    response = viewer_client.get("/monitoring/", {"status": "sideways"})
    assert response.status_code == 400
    assert "Status: Select a valid choice. sideways is not one of the available choices." in response.content.decode()


def test_pinned_is_set_in_the_target_form_and_shown_in_the_list(operator_client):
    created = operator_client.post(
        "/monitoring/",
        {
            "name": "orders-db",
            "kind": "postgres",
            "url": "postgresql://app@db.internal/orders",
            "interval_seconds": 10,
            "timeout_seconds": 5,
            "enabled": "on",
            "pinned": "on",
        },
    )
    assert created.status_code == 302, created.content
    target = Target.objects.get(name="orders-db")
    assert target.pinned
    assert 'data-testid="pinned"' in operator_client.get("/monitoring/").content.decode()
    edit = operator_client.post(
        f"/monitoring/targets/{target.id}/edit/",
        {"name": "orders-db", "kind": "postgres", "interval_seconds": 10, "timeout_seconds": 5, "enabled": "on"},
    )
    assert edit.status_code == 302
    target.refresh_from_db()
    assert not target.pinned


def test_target_options_suggest_a_bounded_list_of_matching_names(viewer_client, anonymous_client):
    _bulk(60)
    html = viewer_client.get("/monitoring/targets/options/", {"field": "target_id", "target_id": "svc-00"}).content
    options = re.findall(r'<option value="([^"]+)">', html.decode())
    assert len(options) == 20 and options[0] == "svc-0000"
    redis = viewer_client.get("/monitoring/targets/options/", {"q": "svc", "kind": "redis"}).content.decode()
    assert '<option value="svc-0001">Redis</option>' in redis and "svc-0000" not in redis
    assert viewer_client.get("/monitoring/targets/options/", {"q": "svc\x00"}).status_code == 400
    assert viewer_client.get("/monitoring/", {"q": "svc\x00"}).status_code == 400
    assert anonymous_client.get("/monitoring/targets/options/").status_code == 302


def test_operators_add_and_edit_promql_sources_and_the_token_is_never_rendered(operator_client, viewer_client):
    from core.models import AuditEvent
    from monitoring.models import PromQLSource

    assert 'data-testid="promql-sources-card"' in operator_client.get("/monitoring/").content.decode()
    refused = operator_client.post(
        "/monitoring/promql-sources/", {"name": "prom", "url": "http://169.254.169.254", "timeout_seconds": "5"}
    )
    assert refused.status_code == 422 and "cloud metadata" in refused.content.decode()
    added = operator_client.post(
        "/monitoring/promql-sources/",
        {"name": "prom", "url": "http://127.0.0.1:9090", "token": "t0ken-value", "timeout_seconds": "5"},
    )
    source = PromQLSource.objects.get()
    assert added.status_code == 302 and source.token == "t0ken-value"
    page = operator_client.get(f"/monitoring/promql-sources/{source.id}/").content.decode()
    assert "t0ken-value" not in page and "token set" in page
    kept = {"name": "prom", "url": "http://127.0.0.1:9091", "token": "", "timeout_seconds": "5"}
    assert operator_client.post(f"/monitoring/promql-sources/{source.id}/", kept).status_code == 302
    source.refresh_from_db()
    assert (source.url, source.token) == ("http://127.0.0.1:9091", "t0ken-value")
    removed = {**kept, "remove_token": "on"}
    assert operator_client.post(f"/monitoring/promql-sources/{source.id}/", removed).status_code == 302
    source.refresh_from_db()
    assert source.token == ""
    listed = viewer_client.get("/monitoring/promql-sources/").content.decode()
    assert "prom" in listed and "Add a source" not in listed
    assert viewer_client.post("/monitoring/promql-sources/", kept).status_code == 403
    assert operator_client.post(f"/monitoring/promql-sources/{source.id}/delete/").status_code == 302
    assert not PromQLSource.objects.exists()
    assert AuditEvent.objects.filter(action__startswith="promql_source.", via="ui").count() == 4
