from __future__ import annotations

import json
import time

import pytest

from monitoring.models import Series, Target
from tests.monitoring.conftest import sample_count

pytestmark = pytest.mark.usefixtures("clean_samples")


def _post(client, auth, body, raw: str | None = None):
    data = raw if raw is not None else json.dumps(body)
    return client.post("/api/v1/metrics", data, content_type="application/json", **auth)


def test_a_batch_of_ten_thousand_samples_is_stored(anonymous_client, operator_auth):
    now = time.time()
    points = [[now - 10_000 + i, float(i)] for i in range(10_000)]
    response = _post(
        anonymous_client,
        operator_auth,
        {"series": [{"metric": "app_queue_depth", "labels": {"app": "shop"}, "points": points}]},
    )
    assert response.status_code == 202, response.content
    assert response.json() == {"accepted": 10_000, "series": 1}
    series = Series.objects.get(metric="app_queue_depth")
    assert series.labels == {"app": "shop"} and series.target is None
    assert sample_count(series.id) == 10_000


def test_samples_can_belong_to_a_named_target(anonymous_client, operator_auth):
    Target.objects.create(name="shop", kind="prometheus")
    response = _post(
        anonymous_client,
        operator_auth,
        {"target": "shop", "series": [{"metric": "orders", "points": [[time.time(), 3]]}]},
    )
    assert response.status_code == 202
    assert Series.objects.get(metric="orders").target.name == "shop"
    unknown = _post(
        anonymous_client,
        operator_auth,
        {"target": "nope", "series": [{"metric": "orders", "points": [[time.time(), 3]]}]},
    )
    assert unknown.status_code == 400
    assert unknown.json()["field"] == "target"


@pytest.mark.parametrize(
    "ts,fragment",
    [
        (0, "outside the accepted range"),
        (time.time() + 3600, "outside the accepted range"),
        (time.time() - 30 * 86400, "outside the accepted range"),
    ],
)
def test_bad_timestamps_are_rejected_and_nothing_is_written(anonymous_client, operator_auth, ts, fragment):
    good = [time.time() - 5, 1.0]
    response = _post(anonymous_client, operator_auth, {"series": [{"metric": "m", "points": [good, [ts, 2.0]]}]})
    assert response.status_code == 400
    error = response.json()["detail"][0]
    assert error["loc"] == ["body", "payload", "series", 0, "points", 1, 0]
    assert fragment in error["msg"]
    assert not Series.objects.filter(metric="m").exists() or sample_count(Series.objects.get(metric="m").id) == 0


def test_nan_values_are_rejected_with_a_422(anonymous_client, operator_auth):
    raw = '{"series": [{"metric": "m", "points": [[' + str(time.time()) + ", NaN]]}]}"
    response = _post(anonymous_client, operator_auth, None, raw=raw)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail[0]["loc"][:3] == ["body", "payload", "series"]


def test_unknown_fields_are_rejected_with_a_422_naming_them(anonymous_client, operator_auth):
    response = _post(
        anonymous_client, operator_auth, {"series": [{"metric": "m", "points": [[time.time(), 1]], "colour": "red"}]}
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][-1] == "colour"


@pytest.mark.parametrize(
    "body",
    [
        {"series": []},
        {"series": [{"metric": "bad metric!", "points": [[1, 1]]}]},
        {"series": [{"metric": "m", "points": []}]},
        {"series": [{"metric": "m", "points": [["soon", 1]]}]},
    ],
)
def test_malformed_batches_are_422(anonymous_client, operator_auth, body):
    assert _post(anonymous_client, operator_auth, body).status_code == 422


def test_viewers_cannot_push(anonymous_client, viewer_auth):
    response = _post(anonymous_client, viewer_auth, {"series": [{"metric": "m", "points": [[time.time(), 1]]}]})
    assert response.status_code == 403


def test_the_openapi_schema_documents_the_ingest_body(anonymous_client, viewer_auth):
    schema = anonymous_client.get("/api/v1/openapi.json", **viewer_auth).json()
    body = schema["paths"]["/api/v1/metrics"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    series = body["properties"]["series"]["items"]
    assert body["required"] == ["series"]
    assert {"metric", "labels", "kind", "unit", "points"} <= set(series["properties"])
    assert "$ref" not in json.dumps(body)  # stands on its own


def test_a_body_that_is_not_json_is_a_422_naming_the_body(anonymous_client, operator_auth):
    response = _post(anonymous_client, operator_auth, None, raw="{not json")
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][:2] == ["body", "payload"]


def test_several_series_in_one_request_are_stored_under_their_own_ids(anonymous_client, operator_auth):
    now = time.time()
    body = {
        "series": [
            {
                "metric": "multi",
                "labels": {"n": str(n)},
                "points": [[now - 100 + i, float(n * 1000 + i)] for i in range(n)],
            }
            for n in (1, 2, 3)
        ]
    }
    assert _post(anonymous_client, operator_auth, body).json() == {"accepted": 6, "series": 3}
    for n in (1, 2, 3):
        assert sample_count(Series.objects.get(metric="multi", labels={"n": str(n)}).id) == n


@pytest.mark.django_db(transaction=True)
def test_a_database_that_cannot_write_is_a_503_and_nothing_is_stored(anonymous_client, operator_auth):
    # A real storage refusal: the session turns read-only, as after a failover to a standby.
    from django.db import connection

    warm = _post(anonymous_client, operator_auth, {"series": [{"metric": "rw", "points": [[time.time(), 1]]}]})
    assert warm.status_code == 202  # the token's last use is recorded: the next request only reads to auth
    with connection.cursor() as cursor:
        cursor.execute("SET default_transaction_read_only = on")
    try:
        response = _post(anonymous_client, operator_auth, {"series": [{"metric": "ro", "points": [[time.time(), 1]]}]})
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SET default_transaction_read_only = off")
    assert response.status_code == 503
    assert "nothing was written" in response.json()["detail"]
    assert not Series.objects.filter(metric="ro").exists()
