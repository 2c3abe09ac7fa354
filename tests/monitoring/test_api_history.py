"""History, search and current values over the API, and their Prometheus exposition."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from monitoring.models import Series
from monitoring.services.targets import TargetInput, target_create
from monitoring.storage import SeriesSpec, samples_write, series_resolve

pytestmark = pytest.mark.usefixtures("clean_samples")


@pytest.fixture
def disk_series(db):
    target = target_create(data=TargetInput(name="box", kind="host"), actor=None, via="system")
    (sid,) = series_resolve(target_id=target.id, specs=[SeriesSpec("host_disk_used_percent", {"mount": "/"})])
    now = timezone.now()
    samples_write([(sid, now - timedelta(seconds=10 * i), 50.0 + i / 100) for i in range(360)])  # one hour
    return sid


def test_query_returns_history_at_a_chosen_resolution(anonymous_client, viewer_auth, disk_series):
    response = anonymous_client.get(f"/api/v1/metrics/query?series={disk_series}&from=-1h&to=now", **viewer_auth)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["resolution"] == "raw"
    (series,) = body["series"]
    assert series["metric"] == "host_disk_used_percent" and series["target"] == "box"
    assert 300 <= len(series["points"]) <= 1500
    _ts, avg, low, high = series["points"][0]
    assert low <= avg <= high


def test_query_step_asks_for_fewer_points(anonymous_client, viewer_auth, disk_series):
    body = anonymous_client.get(f"/api/v1/metrics/query?series={disk_series}&from=-1h&step=600", **viewer_auth).json()
    assert len(body["series"][0]["points"]) <= 7
    assert body["step_seconds"] >= 600


@pytest.mark.parametrize(
    "query,field",
    [
        ("series=abc", "series"),
        ("series=999999", "series"),
        ("series=1&from=yesterday", "from"),
        ("series=1&from=now&to=-1h", "from"),
        ("series=1&from=-99999999999h", "from"),
        ("series=1&from=-999999999999d", "from"),
        ("series=1&from=1e300", "from"),
        ("series=1&from=0001-01-01T00:00:00", "from"),
        ("series=1&from=-\u00b2h", "from"),
        ("series=1&from=-1h&to=9999-12-31T23:59:59", "to"),
    ],
)
def test_bad_query_parameters_are_400_naming_the_field(anonymous_client, viewer_auth, disk_series, query, field):
    query = query.replace("series=1", f"series={disk_series}")
    response = anonymous_client.get(f"/api/v1/metrics/query?{query}", **viewer_auth)
    assert response.status_code == 400, response.content
    assert response.json()["field"] == field


@pytest.mark.parametrize("query", ["step=0", "step=-5", "step=99999999999999999999"])
def test_a_step_outside_its_published_bounds_is_a_422_naming_it(anonymous_client, viewer_auth, disk_series, query):
    response = anonymous_client.get(f"/api/v1/metrics/query?series={disk_series}&{query}", **viewer_auth)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "step"]


def test_series_search_finds_by_metric_and_label(anonymous_client, viewer_auth, disk_series):
    by_metric = anonymous_client.get("/api/v1/metrics/series?q=disk_used", **viewer_auth).json()
    assert [s["id"] for s in by_metric] == [disk_series]
    by_label = anonymous_client.get("/api/v1/metrics/series?q=mount=/", **viewer_auth).json()
    assert [s["labels"] for s in by_label] == [{"mount": "/"}]
    assert anonymous_client.get("/api/v1/metrics/series?q=nothing-like-this", **viewer_auth).json() == []


def test_current_values_and_the_prometheus_exposition(anonymous_client, viewer_auth, disk_series):
    current = anonymous_client.get("/api/v1/performance/metrics", **viewer_auth).json()
    (value,) = [v for v in current if v["metric"] == "host_disk_used_percent"]
    assert value["target"] == "box" and value["value"] == pytest.approx(50.0)
    text = anonymous_client.get("/metrics", **viewer_auth).content.decode()
    assert 'perfpilot_host_disk_used_percent{mount="/",target="box"} 50.0' in text


def test_pages_of_a_target_and_the_explorer_render_its_history(viewer_client, disk_series):
    series = Series.objects.get(pk=disk_series)
    page = viewer_client.get(f"/monitoring/targets/{series.target_id}/?range=6h")
    assert page.status_code == 200
    assert b"Disk used" in page.content  # titled from the metric catalogue, not the raw metric name
    charts = page.context["charts"]
    # 6 h range: 15 s steps; 1 h of data spans 240 bins, or 241 when it does not start on a bin edge.
    assert charts[0].series_count == 1 and charts[0].points in (240, 241)
    fragment = viewer_client.get(
        f"/monitoring/targets/{series.target_id}/?range=1h&fragment=charts", HTTP_HX_REQUEST="true"
    )
    assert fragment.content.decode().lstrip().startswith('<div id="charts"')
    explore = viewer_client.get(f"/monitoring/explore/?series={disk_series}&range=24h&q=disk")
    assert explore.status_code == 200
    assert 55 <= explore.context["chart"].points <= 70  # 24 h range: ~58 s steps over 1 h
    bad = viewer_client.get(f"/monitoring/explore/?series={disk_series}&from=garbage")
    assert bad.status_code == 422 and b"is not a time" in bad.content


@pytest.mark.parametrize(
    "query",
    ["from=-99999999999h", "from=1e300", "from=0001-01-01", "to=9999-12-31", "series=%C2%B2", "series=" + "9" * 40],
)
def test_the_explorer_answers_out_of_range_input_in_the_page_not_with_a_500(viewer_client, disk_series, query):
    page = viewer_client.get(f"/monitoring/explore/?series={disk_series}&{query}")
    assert page.status_code in (200, 422)
    if page.status_code == 422:
        assert (
            b"Nothing drawn" in page.content or b"is not a time" in page.content or b"outside the years" in page.content
        )


def test_an_inverted_explorer_range_says_why_nothing_is_drawn_for_the_selected_series(viewer_client, disk_series):
    page = viewer_client.get(f"/monitoring/explore/?series={disk_series}&from=2026-03-10T10:00&to=2026-03-10T09:00")
    assert page.status_code == 422
    text = page.content.decode()
    assert "Nothing drawn: from must be before to." in text
    assert "the 1 selected series" in text
    assert "Select series below" not in text
