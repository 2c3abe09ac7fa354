from __future__ import annotations

import hashlib
import re

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings

from core.models import ApiToken, AuditEvent


def _shown_token(response) -> str:
    """The secret exactly as the page shows it to the user."""
    match = re.search(r'id="new-token-value">([^<]+)<', response.content.decode())
    assert match, "the new token is not on the page"
    return match.group(1)


def test_token_created_in_the_ui_is_shown_once_and_stored_hashed(viewer_client):
    response = viewer_client.post("/settings/tokens/", {"name": "grafana"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    raw = _shown_token(response)
    assert raw.startswith("pp_")
    token = ApiToken.objects.get(name="grafana")
    assert token.digest == hashlib.sha256(raw.encode()).hexdigest()
    assert raw not in {token.digest, token.prefix, token.name}
    # Shown once: the page never renders it again.
    assert raw.encode() not in viewer_client.get("/settings/").content


def test_token_form_without_javascript_gets_the_whole_page(viewer_client):
    response = viewer_client.post("/settings/tokens/", {"name": "no-js"})
    assert response.status_code == 200
    assert b"<nav" in response.content and _shown_token(response).startswith("pp_")


def test_blank_token_name_shows_a_field_error(viewer_client):
    response = viewer_client.post("/settings/tokens/", {"name": "   "}, HTTP_HX_REQUEST="true")
    assert response.status_code == 422
    assert b"This field is required." in response.content
    assert not ApiToken.objects.exists()


def test_bearer_token_authenticates_and_records_last_use(anonymous_client, viewer_client):
    raw = _shown_token(viewer_client.post("/settings/tokens/", {"name": "ci"}))
    assert ApiToken.objects.get(name="ci").last_used_at is None
    response = anonymous_client.get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert response.status_code == 200
    assert response.json() == {"username": "vera-viewer", "role": "viewer"}
    assert ApiToken.objects.get(name="ci").last_used_at is not None


@override_settings(API_TOKEN_TOUCH_SECONDS=3600)
def test_last_use_is_written_at_most_once_per_interval(anonymous_client, viewer_auth):
    anonymous_client.get("/api/v1/me", **viewer_auth)
    first = ApiToken.objects.get().last_used_at
    anonymous_client.get("/api/v1/me", **viewer_auth)
    assert ApiToken.objects.get().last_used_at == first


def test_revoked_token_is_refused(anonymous_client, viewer_client, viewer_user):
    raw = _shown_token(viewer_client.post("/settings/tokens/", {"name": "old"}))
    token = ApiToken.objects.get(name="old")
    response = viewer_client.post(f"/settings/tokens/{token.id}/revoke/", HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert anonymous_client.get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 401
    assert list(AuditEvent.objects.values_list("action", flat=True).order_by("id")) == [
        "api_token.create",
        "api_token.revoke",
    ]


@pytest.mark.parametrize("header", ["Bearer pp_not-a-real-token", "Bearer ", "Basic dXNlcjpwYXNz", "pp_x"])
def test_unknown_or_malformed_tokens_get_401(anonymous_client, header, db):
    assert anonymous_client.get("/api/v1/me", HTTP_AUTHORIZATION=header).status_code == 401


def test_token_of_a_deactivated_user_is_refused(anonymous_client, viewer_user, viewer_auth):
    viewer_user.is_active = False
    viewer_user.save()
    assert anonymous_client.get("/api/v1/me", **viewer_auth).status_code == 401


def test_token_lifecycle_through_the_api(anonymous_client, operator_auth):
    created = anonymous_client.post(
        "/api/v1/tokens", {"name": "deploy"}, content_type="application/json", **operator_auth
    )
    assert created.status_code == 201
    body = created.json()
    assert body["token"].startswith("pp_") and body["prefix"] == body["token"][:10]
    listed = anonymous_client.get("/api/v1/tokens", **operator_auth).json()
    assert {t["name"] for t in listed} == {"test", "deploy"}
    assert all("token" not in t and "digest" not in t for t in listed)
    new_auth = {"HTTP_AUTHORIZATION": f"Bearer {body['token']}"}
    assert anonymous_client.get("/api/v1/me", **new_auth).json()["role"] == "operator"
    revoked = anonymous_client.delete(f"/api/v1/tokens/{body['id']}", **operator_auth)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    assert anonymous_client.get("/api/v1/me", **new_auth).status_code == 401


def test_users_cannot_revoke_each_others_tokens(anonymous_client, viewer_auth, operator_user):
    from core.services import api_token_create

    other = api_token_create(user=operator_user, name="theirs", via="command").token
    response = anonymous_client.delete(f"/api/v1/tokens/{other.id}", **viewer_auth)
    assert response.status_code == 404
    other.refresh_from_db()
    assert other.revoked_at is None


def test_token_name_is_validated_by_the_api(anonymous_client, viewer_auth):
    response = anonymous_client.post("/api/v1/tokens", {"name": ""}, content_type="application/json", **viewer_auth)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "payload", "name"]


def test_management_command_prints_a_working_token(capsys, anonymous_client, operator_user):
    call_command("create_api_token", user="oscar-operator", name="cron")
    raw = capsys.readouterr().out.strip()
    assert anonymous_client.get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 200
    assert AuditEvent.objects.filter(action="api_token.create", via="command").exists()


def test_management_command_rejects_unknown_users(db):
    with pytest.raises(CommandError, match="No active user named 'ghost'"):
        call_command("create_api_token", user="ghost", name="cron")
