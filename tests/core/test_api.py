from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.django_db


def test_unknown_api_path_is_a_json_404(anonymous_client, viewer_auth):
    response = anonymous_client.get("/api/v1/tokens/999999", **viewer_auth)
    assert response.status_code in (404, 405)
    response = anonymous_client.delete("/api/v1/tokens/999999", **viewer_auth)
    assert response.status_code == 404
    assert response.json() == {"detail": "Not Found"}


def test_validation_errors_name_the_fields(anonymous_client, viewer_auth):
    response = anonymous_client.post("/api/v1/tokens", {"nom": "x"}, content_type="application/json", **viewer_auth)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail[0]["loc"] == ["body", "payload", "name"]
    assert detail[0]["msg"] == "Field required"


def test_wrong_types_in_the_path_are_422_not_500(anonymous_client, viewer_auth):
    response = anonymous_client.delete("/api/v1/tokens/not-a-number", **viewer_auth)
    assert response.status_code in (404, 422)
    assert "detail" in response.json()


def test_malformed_json_is_a_400_naming_the_problem(anonymous_client, viewer_auth):
    response = anonymous_client.post("/api/v1/tokens", "{not json", content_type="application/json", **viewer_auth)
    assert 400 <= response.status_code < 500
    assert "detail" in response.json()


def test_openapi_schema_lists_the_status_endpoint_and_bearer_auth(anonymous_client, viewer_auth):
    response = anonymous_client.get("/api/v1/openapi.json", **viewer_auth)
    assert response.status_code == 200
    schema = response.json()
    assert "/api/v1/performance/status" in schema["paths"]
    assert "BearerTokenAuth" in schema["components"]["securitySchemes"]


def test_openapi_schema_validates_and_repeats_no_key(anonymous_client, viewer_auth):
    from openapi_spec_validator import validate

    duplicated_keys = []

    def object_without_duplicates(pairs):
        keys = [key for key, _ in pairs]
        duplicated_keys.extend(key for key in set(keys) if keys.count(key) > 1)
        return dict(pairs)

    # Swagger UI reads the document like YAML, where int 401 and "401" from JSON are one key twice.
    raw = anonymous_client.get("/api/v1/openapi.json", **viewer_auth).content
    schema = json.loads(raw, object_pairs_hook=object_without_duplicates)
    assert duplicated_keys == []
    validate(schema)
    token_create = schema["paths"]["/api/v1/tokens"]["post"]["responses"]
    assert {"201", "401", "422", "503"} <= set(token_create)


def test_api_docs_render_for_a_signed_in_user_from_local_static_files(viewer_client):
    response = viewer_client.get("/api/docs", follow=True)
    assert response.status_code == 200
    html = response.content.decode()
    assert "swagger-ui" in html
    assert "/static/ninja/swagger-ui-bundle.js" in html
    assert "cdn" not in html.lower()


def test_api_docs_accept_a_bearer_token(anonymous_client, viewer_auth):
    response = anonymous_client.get("/api/docs", follow=True, **viewer_auth)
    assert response.status_code == 200
    assert b"swagger-ui" in response.content


def test_api_docs_send_anonymous_users_to_login(anonymous_client):
    response = anonymous_client.get("/api/v1/docs")
    assert response.status_code == 302
    assert response.url.startswith("/login/")


def test_database_outage_is_a_503_not_a_500(anonymous_client, viewer_auth, monkeypatch):
    from django.db import OperationalError

    import core.api

    def broken(**kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(core.api, "control_plane_status", broken)
    response = anonymous_client.get("/api/v1/performance/status", **viewer_auth)
    assert response.status_code == 503
    assert response.json() == {
        "detail": "The database is unavailable; nothing was written. Try again shortly.",
        "component": "database",
    }
    assert response["Retry-After"]


@pytest.mark.parametrize(
    "section,queue",
    [("monitoring", "collect"), ("optimizer", "maintenance"), ("scaling", "scale"), ("alerts", "notify")],
)
def test_each_app_router_serves_its_section_summary(anonymous_client, viewer_auth, section, queue):
    response = anonymous_client.get(f"/api/v1/{section}/summary", **viewer_auth)
    assert response.status_code == 200
    body = response.json()
    assert (body["section"], body["queue"]) == (section, queue)
    assert isinstance(body["queue_length"], int)
    assert body["schedules"] == []


def test_a_nul_character_in_input_is_a_422_not_a_500(anonymous_client, operator_auth):
    response = anonymous_client.post(
        "/api/v1/tokens", {"name": "bad\u0000name"}, content_type="application/json", **operator_auth
    )
    assert response.status_code == 422
    # Refused by the parser, naming the field, before the database is asked (tests/core/test_parser.py).
    assert response.json()["detail"][0]["loc"] == ["body", "name"]


def test_an_unknown_api_path_is_a_json_404(anonymous_client, viewer_auth):
    response = anonymous_client.get("/api/v1/performance/alerts/not-a-number", **viewer_auth)
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}
