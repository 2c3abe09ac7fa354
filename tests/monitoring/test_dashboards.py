"""Which charts a target shows, titled and formatted from the metric catalogue (figure data, real PostgreSQL)."""

from __future__ import annotations

import json
from datetime import timedelta

import plotly.graph_objects as go
import pytest
from django.utils import timezone

from core.charts import EMPTY_TEXT
from monitoring import storage
from monitoring.dashboards import all_metric_charts, explorer_chart, key_charts
from monitoring.models import Target

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def postgres_target(clean_samples):
    return Target.objects.create(name="pg", kind=Target.Kind.POSTGRES)


def _series(target: Target, metric: str, unit: str = "", **labels: str) -> int:
    spec = storage.SeriesSpec(metric=metric, labels=labels, unit=unit)
    return storage.series_resolve(target_id=target.id, specs=[spec])[0]


def _window():
    end = timezone.now()
    return end - timedelta(hours=1), end


def test_target_page_charts_are_titled_from_the_catalogue_not_by_raw_metric_names(postgres_target):
    _series(postgres_target, "postgres_blocked_sessions")
    _series(postgres_target, "postgres_database_size_bytes", "bytes", database="shop")
    start, end = _window()
    charts = {chart.title: chart for chart in all_metric_charts(target=postgres_target, start=start, end=end)}
    assert set(charts) == {"Blocked sessions", "Database size"}
    assert charts["Blocked sessions"].meaning == "Clients waiting on a lock another one holds"
    size = json.loads(charts["Database size"].figure_json)
    assert (size["layout"]["yaxis"]["ticksuffix"], size["layout"]["yaxis"]["exponentformat"]) == ("B", "SI")


def test_a_chart_of_several_metrics_names_its_lines_by_their_titles(postgres_target):
    writes = [
        (_series(postgres_target, "postgres_commits_per_second", "/s"), 5.0),
        (_series(postgres_target, "postgres_rollbacks_per_second", "/s"), 1.0),
    ]
    now = timezone.now()
    storage.samples_write([(sid, now - timedelta(minutes=1), value) for sid, value in writes])
    start, end = _window()
    (transactions,) = key_charts(target=postgres_target, start=start, end=end)
    figure = json.loads(transactions.figure_json)
    assert transactions.title == "Transactions"
    assert [trace["name"] for trace in figure["data"]] == ["Commits", "Rollbacks"]
    assert figure["layout"]["yaxis"]["ticksuffix"] == "/s"
    assert figure["layout"]["legend"]["yanchor"] == "bottom" and figure["layout"]["legend"]["y"] >= 1
    go.Figure(figure)


def test_a_chart_without_samples_in_the_range_shows_the_empty_state(postgres_target):
    _series(postgres_target, "postgres_blocked_sessions")
    start, end = _window()
    (chart,) = all_metric_charts(target=postgres_target, start=start, end=end)
    layout = json.loads(chart.figure_json)["layout"]
    assert [a["text"] for a in layout["annotations"]] == [EMPTY_TEXT]
    assert layout["xaxis"]["visible"] is False and layout["yaxis"]["visible"] is False


def test_a_one_series_explorer_chart_is_titled_by_its_series_and_shows_its_legend(postgres_target):
    series_id = _series(postgres_target, "postgres_connections", state="idle")
    storage.samples_write([(series_id, timezone.now() - timedelta(minutes=1), 4.0)])
    start, end = _window()
    chart = explorer_chart(series_ids=[series_id], start=start, end=end)
    figure = json.loads(chart.figure_json)
    assert chart.title == "pg · Connections {state=idle}"
    assert figure["layout"]["showlegend"] is True
    assert figure["data"][-1]["name"] == "pg · Connections {state=idle}"
