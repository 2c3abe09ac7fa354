"""core.parser: the API's JSON parser refuses NUL in any input text (PostgreSQL cannot store it)
with a 422 naming where it is, after authentication, and nothing reaches the database."""

from __future__ import annotations

import json

import pytest

from core.parser import nul_location
from monitoring.models import Target

pytestmark = pytest.mark.django_db

TARGET = {"name": "db1", "kind": "host", "url": "", "options": {}}


def _post(client, path, body, auth):
    return client.post(path, json.dumps(body), content_type="application/json", **auth)


def test_nul_location_finds_nul_in_keys_and_values_at_any_depth():
    assert nul_location({"a": [1, {"b": "x\x00"}]}, ("body",)) == ["body", "a", 1, "b"]
    assert nul_location({"ok": {"k\x00": 1}}) == ["ok", "k\x00"]
    assert nul_location({"a": ["x", 1.5, None, {"b": "\\u0000"}]}) is None


@pytest.mark.parametrize(
    ("change", "loc"),
    [
        ({"name": "db\x001"}, ["body", "name"]),
        # A key of a free-form object: a jsonb column, which cannot hold \u0000 either.
        ({"options": {"port\x00": None}}, ["body", "options", "port\x00"]),
        ({"options": {"nested": [{"deep": "x\x00"}]}}, ["body", "options", "nested", 0, "deep"]),
    ],
)
def test_nul_in_a_body_is_a_422_naming_where_it_is(client, operator_auth, change, loc):
    # These answered a 422 from the database layer (a DataError) while openapi.json allowed them.
    response = _post(client, "/api/v1/targets", {**TARGET, **change}, operator_auth)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == loc
    assert not Target.objects.exists()


def test_an_escaped_backslash_u0000_is_plain_text_and_accepted(client, operator_auth):
    response = _post(client, "/api/v1/targets", {**TARGET, "name": "db\\u0000"}, operator_auth)
    assert response.status_code == 201
    assert Target.objects.get().name == "db\\u0000"


def test_nul_in_a_query_parameter_is_a_422_naming_it(client, viewer_auth):
    response = client.get("/api/v1/targets", {"kind": "host\x00"}, **viewer_auth)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "kind"]


def test_nul_in_push_ingestion_labels_is_a_422(client, operator_auth):
    # POST /metrics validates with pydantic's own JSON parser, not this one: its strings are `Text`.
    body = {"series": [{"metric": "m", "labels": {"a\x00": "b"}, "points": [[1_700_000_000, 1.0]]}]}
    response = _post(client, "/api/v1/metrics", body, operator_auth)
    assert response.status_code == 422
    assert "labels" in response.json()["detail"][0]["loc"]


def test_nul_without_credentials_is_still_a_401(client):
    response = _post(client, "/api/v1/targets", {**TARGET, "name": "db\x00"}, {})
    assert response.status_code == 401


def test_a_single_valued_query_parameter_given_twice_is_a_422(client, viewer_auth):
    # It was read as its last value, the first silently dropped (schemathesis: a schema-violating
    # request accepted); parameters declared as lists still take several values.
    response = client.get("/api/v1/targets?kind=host&kind=redis", **viewer_auth)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "kind"]
    assert client.get("/api/v1/targets?kind=host", **viewer_auth).status_code == 200
