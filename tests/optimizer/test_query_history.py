"""Per-query history: buckets of monitoring's snapshot deltas, the applies marked on the charts, the page
(negative query ids included), the speed-ups on the Database page, and their API for viewers."""

from __future__ import annotations

from datetime import timedelta

import plotly.graph_objects as go
import pytest
from django.utils import timezone

from core.errors import InvalidInput
from monitoring.models import QueryStat, QueryText, Target
from optimizer.query_history_charts import calls_figure, mean_time_figure
from optimizer.query_history_selectors import history_bucket, query_history
from tests.optimizer.conftest import plant_applied, plant_stat

API = "/api/v1/performance/database"
QUERYID = -6_917_529_027_641_081_856  # pg_stat_statements ids are signed: half of them are negative
TEXT = "SELECT * FROM orders WHERE customer_id = $1"

pytestmark = pytest.mark.django_db


@pytest.fixture
def target() -> Target:
    target = Target.objects.create(name="orders-db", kind=Target.Kind.POSTGRES, interval_seconds=60)
    QueryText.objects.create(target=target, queryid=QUERYID, query=TEXT, database="orders")
    return target


def _minute(ago: timedelta):
    at = timezone.now() - ago
    return at.replace(second=0, microsecond=0)


def _stat(target, at, *, calls, total_ms, queryid=QUERYID, **blocks) -> None:
    plant_stat(target, queryid, at=at, calls=calls, total_ms=total_ms, **blocks)


def _apply(target, at, *, evidence, title="Create index on orders (customer_id)", **kwargs):
    return plant_applied(target, at=at, evidence=evidence, title=title, **kwargs)


def test_snapshots_are_summed_per_bucket_and_other_queries_and_times_left_out(target):
    first = _minute(timedelta(minutes=30))
    _stat(target, first + timedelta(seconds=10), calls=10, total_ms=100.0, hit=90, read=10)
    _stat(target, first + timedelta(seconds=40), calls=30, total_ms=500.0, hit=10, read=90)
    _stat(target, first + timedelta(minutes=5, seconds=10), calls=0, total_ms=0.0)
    _stat(target, first + timedelta(seconds=20), calls=1000, total_ms=1.0, queryid=42)  # another query
    _stat(target, first - timedelta(hours=2), calls=1000, total_ms=1.0)  # before the range

    history = query_history(target=target, queryid=QUERYID, range_label="1h")

    assert history.bucket == timedelta(minutes=1) and history.bucket_label == "minute"
    assert [b.at for b in history.buckets] == [first, first + timedelta(minutes=5)]
    busy, idle = history.buckets
    assert (busy.calls, busy.total_time_ms, busy.rows) == (40, 600.0, 40)
    assert busy.mean_time_ms == 15.0 and busy.hit_ratio_percent == 50.0
    assert idle.calls == 0 and idle.mean_time_ms is None and idle.hit_ratio_percent is None
    assert (history.totals.calls, history.totals.mean_time_ms) == (40, 15.0)
    assert history.query == TEXT and history.database == "orders"


def test_the_bucket_grows_with_the_range_and_is_never_finer_than_the_collection_interval():
    assert history_bucket(span=timedelta(hours=1)) == timedelta(minutes=1)
    assert history_bucket(span=timedelta(hours=24)) == timedelta(minutes=15)
    assert history_bucket(span=timedelta(days=7)) == timedelta(hours=2)
    assert history_bucket(span=timedelta(days=30)) == timedelta(hours=12)
    assert history_bucket(span=timedelta(hours=1), interval_seconds=600) == timedelta(minutes=15)


def test_applies_in_the_range_are_marked_and_say_whether_they_served_the_query(target):
    now = timezone.now()
    served = _apply(target, now - timedelta(hours=3), evidence={"table": "invoices", "queries": [{"queryid": QUERYID}]})
    same_table = _apply(target, now - timedelta(hours=2), evidence={"table": "orders"}, title="on orders")
    other = _apply(target, now - timedelta(hours=1), evidence={"table": "invoices", "queries": []}, title="invoices")
    _apply(target, now - timedelta(hours=1), evidence={"table": "orders"}, dry_run=True, title="dry")
    _apply(target, now - timedelta(hours=1), evidence={"table": "orders"}, status="failed", title="failed")
    _apply(target, now - timedelta(days=3), evidence={"table": "orders"}, title="before the range")
    _stat(target, now - timedelta(hours=4), calls=5, total_ms=50.0)
    _stat(target, now - timedelta(minutes=30), calls=5, total_ms=5.0)

    history = query_history(target=target, queryid=QUERYID, range_label="24h")

    assert [(m.run_id, m.serves_query) for m in history.markers] == [
        (served.id, True),
        (same_table.id, True),
        (other.id, False),
    ]
    figure = mean_time_figure(history)
    go.Figure(figure)  # valid plotly
    lines = figure["layout"]["shapes"]
    assert [shape["x0"] for shape in lines] == [m.applied_at for m in history.markers]
    assert [shape["line"]["dash"] for shape in lines] == ["solid", "solid", "dot"]
    labels = [a["text"] for a in figure["layout"]["annotations"]]
    assert labels == [f"#{m.recommendation_id} applied" for m in history.markers]
    assert figure["data"][0]["y"] == [10.0, 1.0]


def test_charts_draw_calls_per_bucket_and_say_so_when_the_range_is_empty(target):
    _stat(target, _minute(timedelta(minutes=10)), calls=7, total_ms=14.0)
    _stat(target, _minute(timedelta(minutes=5)), calls=0, total_ms=0.0)
    history = query_history(target=target, queryid=QUERYID, range_label="1h")
    calls = calls_figure(history)
    go.Figure(calls)
    assert calls["data"][0]["y"] == [7, 0]
    assert mean_time_figure(history)["data"][0]["y"] == [2.0]  # a bucket without calls has no mean time
    QueryStat.objects.all().delete()
    empty = calls_figure(query_history(target=target, queryid=QUERYID, range_label="1h"))
    assert empty["layout"]["annotations"][0]["text"] == "No data in this range yet"


def test_an_unknown_query_has_no_history_and_an_unknown_range_is_refused_naming_it(target):
    assert query_history(target=target, queryid=QUERYID + 1) is None
    with pytest.raises(InvalidInput) as refused:
        query_history(target=target, queryid=QUERYID, range_label="2d")
    assert refused.value.field == "range"


def test_a_viewer_opens_the_history_of_a_negative_query_id_and_its_explain_link(viewer_client, target):
    _stat(target, _minute(timedelta(hours=2)), calls=3, total_ms=9.0)
    page = viewer_client.get(f"/optimizer/database/{target.id}/queries/{QUERYID}/?range=7d")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'data-testid="calls-chart"' in html and 'data-testid="mean-time-chart"' in html
    assert page.context["history"].range_label == "7d"
    assert f"/optimizer/database/{target.id}/explain/?queryid={QUERYID}" in html
    explain = viewer_client.get(f"/optimizer/database/{target.id}/explain/?queryid={QUERYID}")
    assert explain.status_code == 200 and explain.context["query"] == TEXT
    assert viewer_client.get(f"/optimizer/database/{target.id}/queries/{QUERYID + 1}/").status_code == 404
    assert viewer_client.get(f"/optimizer/database/{target.id}/queries/{2**63}/").status_code == 404


def test_the_database_page_links_each_slow_query_to_its_history_and_lists_speedups(viewer_client, target):
    now = timezone.now()
    _stat(target, now - timedelta(minutes=30), calls=10, total_ms=20.0)
    evidence = {"queries": [{"queryid": QUERYID, "query": TEXT}]}
    _apply(target, now - timedelta(hours=1), evidence=evidence, observed={QUERYID: (40.0, 2.0)})
    page = viewer_client.get(f"/optimizer/database/{target.id}/")
    html = page.content.decode()
    assert f'href="/optimizer/database/{target.id}/queries/{QUERYID}/" data-testid="history-link"' in html
    assert 'data-testid="workbench-flow"' in html
    assert page.context["report"].speedups_observed == 1
    assert "20\N{MULTIPLICATION SIGN}" in html


def test_the_history_api_answers_buckets_totals_and_markers_to_viewers(anonymous_client, viewer_auth, target):
    at = _minute(timedelta(minutes=20))
    _stat(target, at, calls=4, total_ms=10.0, rows=8, hit=3, read=1)
    run = _apply(target, timezone.now() - timedelta(minutes=10), evidence={"queries": [{"queryid": QUERYID}]})
    answer = anonymous_client.get(f"{API}/{target.id}/queries/{QUERYID}/history?range=1h", **viewer_auth)
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert (body["queryid"], body["query"], body["range"], body["bucket_seconds"]) == (QUERYID, TEXT, "1h", 60)
    assert body["buckets"] == [
        {
            "at": at.isoformat().replace("+00:00", "Z"),
            "calls": 4,
            "total_time_ms": 10.0,
            "mean_time_ms": 2.5,
            "rows": 8,
            "shared_blks_hit": 3,
            "shared_blks_read": 1,
            "hit_ratio_percent": 75.0,
        }
    ]
    assert body["totals"]["calls"] == 4
    assert [(m["run_id"], m["serves_query"]) for m in body["markers"]] == [(run.id, True)]
    assert anonymous_client.get(f"{API}/{target.id}/queries/{QUERYID}/history").status_code == 401


def test_the_history_api_refuses_a_bad_range_and_answers_404_for_unknown_targets_and_queries(
    anonymous_client, viewer_auth, target
):
    bad = anonymous_client.get(f"{API}/{target.id}/queries/{QUERYID}/history?range=2d", **viewer_auth)
    assert bad.status_code == 400 and bad.json()["field"] == "range"
    unknown_query = anonymous_client.get(f"{API}/{target.id}/queries/{QUERYID + 1}/history", **viewer_auth)
    assert unknown_query.status_code == 404
    redis = Target.objects.create(name="cache", kind=Target.Kind.REDIS)
    for other in (redis.id, target.id + 1000):
        assert anonymous_client.get(f"{API}/{other}/queries/{QUERYID}/history", **viewer_auth).status_code == 404
        assert anonymous_client.get(f"{API}/{other}/speedups", **viewer_auth).status_code == 404
    huge = anonymous_client.get(f"{API}/{target.id}/queries/{2**63}/history", **viewer_auth)
    assert huge.status_code == 422


def test_the_speedups_api_lists_observed_and_waiting_applies_newest_first(anonymous_client, viewer_auth, target):
    now = timezone.now()
    evidence = {"queries": [{"queryid": QUERYID, "query": TEXT}]}
    observed = _apply(target, now - timedelta(hours=2), evidence=evidence, observed={QUERYID: (30.0, 3.0)})
    waiting = _apply(
        target,
        now - timedelta(minutes=1),
        evidence={"queries": [{"queryid": QUERYID, "query": TEXT, "mean_time_ms": 12.5}]},
        title="second",
    )
    body = anonymous_client.get(f"{API}/{target.id}/speedups", **viewer_auth).json()
    assert [(s["run_id"], s["status"], s["speedup"]) for s in body["speedups"]] == [
        (waiting.id, "waiting", None),
        (observed.id, "observed", 10.0),
    ]
    assert body["speedups"][0]["queries"][0] == {
        "queryid": QUERYID,
        "query": TEXT,
        "before_ms": 12.5,
        "after_ms": None,
        "speedup": None,
    }
    assert body["speedups"][1]["mean_after_ms"] == 3.0
