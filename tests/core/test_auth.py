from __future__ import annotations

import re

import pytest
from django.test import override_settings
from django_celery_beat.models import PeriodicTask

from core.models import AuditEvent
from core.roles import ADMIN, OPERATOR, VIEWER, has_role, role_of, user_set_role

PAGES = ["/", "/monitoring/", "/optimizer/", "/scaling/", "/alerts/", "/settings/", "/admin/"]


@pytest.mark.django_db
@pytest.mark.parametrize("path", PAGES)
def test_anonymous_user_is_redirected_to_login(anonymous_client, path):
    response = anonymous_client.get(path)
    assert response.status_code == 302
    assert response.url.startswith("/login/") or response.url.startswith("/admin/login/")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "method,path",
    [
        ("get", "/api/v1/performance/status"),
        ("get", "/api/v1/me"),
        ("get", "/api/v1/tokens"),
        ("post", "/api/v1/tokens"),
        ("get", "/api/v1/schedules"),
        ("get", "/api/v1/openapi.json"),
    ],
)
def test_anonymous_api_call_gets_401_json(anonymous_client, method, path):
    response = getattr(anonymous_client, method)(path)
    assert response.status_code == 401
    assert response["Content-Type"].startswith("application/json")
    assert "detail" in response.json()


@pytest.mark.django_db
def test_anonymous_metrics_scrape_gets_401(anonymous_client):
    response = anonymous_client.get("/metrics")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"


@pytest.mark.django_db
def test_login_page_signs_a_user_in_and_lands_on_the_overview(anonymous_client, viewer_user):
    page = anonymous_client.get("/login/")
    assert page.status_code == 200
    response = anonymous_client.post("/login/", {"username": "vera-viewer", "password": "correct-horse-battery"})
    assert response.status_code == 302
    assert response.url == "/"


@pytest.mark.django_db
def test_wrong_password_shows_an_error_on_the_form(anonymous_client, viewer_user):
    response = anonymous_client.post("/login/", {"username": "vera-viewer", "password": "nope"})
    assert response.status_code == 200
    assert b"Please enter a correct username and password" in response.content


@pytest.mark.django_db
def test_roles_are_ordered_viewer_operator_admin(viewer_user, operator_user, admin_user):
    assert role_of(viewer_user) == VIEWER
    assert has_role(operator_user, VIEWER) and has_role(operator_user, OPERATOR)
    assert not has_role(operator_user, ADMIN)
    assert not has_role(viewer_user, OPERATOR)
    assert has_role(admin_user, OPERATOR) and admin_user.is_staff and admin_user.is_superuser


@pytest.mark.django_db
def test_changing_a_role_replaces_the_old_one(admin_user):
    user_set_role(user=admin_user, role=VIEWER)
    admin_user.refresh_from_db()
    assert role_of(admin_user) == VIEWER
    assert not admin_user.is_staff and not admin_user.is_superuser


@pytest.mark.django_db
def test_user_without_any_role_can_read_nothing_privileged(django_user_model):
    nobody = django_user_model.objects.create_user(username="nobody", password="x")
    assert role_of(nobody) is None


@pytest.fixture
def schedule(db):
    return PeriodicTask.objects.get(name="Clear expired sessions")


@pytest.fixture(autouse=True)
def _default_schedules(db):
    from core.services import schedule_sync_defaults

    schedule_sync_defaults()


def test_viewer_gets_403_on_an_operator_action_in_the_api(anonymous_client, viewer_auth, schedule):
    response = anonymous_client.post(f"/api/v1/schedules/{schedule.id}/run", **viewer_auth)
    assert response.status_code == 403
    assert response.json() == {"detail": "This needs the operator role."}
    response = anonymous_client.patch(
        f"/api/v1/schedules/{schedule.id}", {"enabled": False}, content_type="application/json", **viewer_auth
    )
    assert response.status_code == 403
    schedule.refresh_from_db()
    assert schedule.enabled is True


def test_viewer_gets_403_on_an_operator_action_in_the_ui(viewer_client, schedule):
    response = viewer_client.post(f"/schedules/{schedule.id}/toggle/")
    assert response.status_code == 403
    schedule.refresh_from_db()
    assert schedule.enabled is True


def test_viewer_does_not_see_action_buttons(viewer_client, operator_client):
    assert b"Run now" not in viewer_client.get("/settings/").content
    assert b"Run now" in operator_client.get("/settings/").content


def test_operator_can_disable_a_schedule_and_it_is_audited(operator_client, schedule):
    response = operator_client.post(f"/schedules/{schedule.id}/toggle/", {"next": "/settings/"})
    assert response.status_code == 302
    schedule.refresh_from_db()
    assert schedule.enabled is False
    event = AuditEvent.objects.get(action="schedule.disable")
    assert (event.actor_name, event.via, event.object_repr) == ("oscar-operator", "ui", schedule.name)


def test_operator_can_disable_a_schedule_through_the_api(anonymous_client, operator_auth, schedule):
    response = anonymous_client.patch(
        f"/api/v1/schedules/{schedule.id}", {"enabled": False}, content_type="application/json", **operator_auth
    )
    assert response.status_code == 200
    assert response.json()["enabled"] is False


def test_only_admins_reach_the_django_admin(operator_client, admin_client):
    assert operator_client.get("/admin/").status_code == 302  # to the admin login: not staff
    assert admin_client.get("/admin/").status_code == 200
    assert admin_client.get("/admin/auth/user/").status_code == 200


def test_admin_sets_a_role_in_the_django_admin(admin_client, viewer_user):
    page = admin_client.get(f"/admin/auth/user/{viewer_user.id}/change/")
    assert page.status_code == 200
    form = {
        "username": viewer_user.username,
        "role": OPERATOR,
        "is_active": "on",
        "date_joined_0": "2026-01-01",
        "date_joined_1": "00:00:00",
    }
    response = admin_client.post(f"/admin/auth/user/{viewer_user.id}/change/", form)
    assert response.status_code == 302, response.content[:2000]
    assert role_of(viewer_user) == OPERATOR
    assert AuditEvent.objects.filter(action="user.set_role", object_repr=viewer_user.username).exists()


def test_api_session_writes_need_a_csrf_token(viewer_user):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(viewer_user)
    response = client.post("/api/v1/tokens", {"name": "x"}, content_type="application/json")
    assert response.status_code == 403


# --- login throttling, lockout and its audit records (django-axes) ------------------------------------


@override_settings(AXES_FAILURE_LIMIT=3)
def test_login_is_locked_out_after_the_failure_limit_and_every_failure_is_audited(viewer_user):
    from django.test import Client

    client = Client(REMOTE_ADDR="203.0.113.7")
    for _ in range(2):
        wrong = client.post("/login/", {"username": "vera-viewer", "password": "nope"})
        assert wrong.status_code == 200 and b"Please enter a correct username and password" in wrong.content
    locked = client.post("/login/", {"username": "vera-viewer", "password": "nope"})
    assert locked.status_code == 429
    assert b"Too many failed sign-ins" in locked.content and b"vera-viewer" in locked.content
    # Even the right password is refused while locked out, and says so.
    right = client.post("/login/", {"username": "vera-viewer", "password": "correct-horse-battery"})
    assert right.status_code == 429 and "_auth_user_id" not in client.session
    failures = AuditEvent.objects.filter(action="login.failed").order_by("id")
    assert failures.count() >= 3
    assert {(e.object_repr, e.result, e.detail["ip"]) for e in failures} == {("vera-viewer", "denied", "203.0.113.7")}
    assert AuditEvent.objects.filter(action="login.locked_out", object_repr="vera-viewer").exists()
    # Another address is not locked out by these failures.
    other = Client(REMOTE_ADDR="203.0.113.8")
    assert other.post("/login/", {"username": "vera-viewer", "password": "correct-horse-battery"}).status_code == 302


@override_settings(AXES_FAILURE_LIMIT=2)
def test_admin_login_is_throttled_too(admin_user):
    from django.test import Client

    client = Client(REMOTE_ADDR="198.51.100.4")
    form = {"username": admin_user.username, "password": "nope", "next": "/admin/"}
    assert client.post("/admin/login/", form).status_code == 200
    assert client.post("/admin/login/", form).status_code == 429
    assert AuditEvent.objects.filter(action="login.failed", object_repr=admin_user.username).count() == 2


def test_a_successful_login_resets_the_failure_count(viewer_user):
    from django.test import Client

    with override_settings(AXES_FAILURE_LIMIT=3):
        client = Client(REMOTE_ADDR="192.0.2.10")
        for _ in range(2):
            client.post("/login/", {"username": "vera-viewer", "password": "nope"})
        assert (
            client.post("/login/", {"username": "vera-viewer", "password": "correct-horse-battery"}).status_code == 302
        )
        client.logout()
        for _ in range(2):
            assert client.post("/login/", {"username": "vera-viewer", "password": "nope"}).status_code == 200


# --- 401, not a CSRF failure, for missing or refused credentials on every API operation ----------------


def _operations():
    from config.api import api

    schema = api.get_openapi_schema()
    for path, operations in schema["paths"].items():
        for method in operations:
            yield method, "/api/v1" + path.removeprefix("/api/v1")


def test_every_api_operation_answers_401_with_www_authenticate_without_valid_credentials(db):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    operations = list(_operations())
    assert len(operations) > 50
    for method, template in operations:
        path = re.sub(r"\{[^}]+\}", "1", template)
        for headers in ({}, {"HTTP_AUTHORIZATION": "Bearer pp_wrong"}, {"HTTP_AUTHORIZATION": "Basic eDp5"}):
            if method in ("get", "delete", "head", "options"):
                response = getattr(client, method)(path, **headers)
            else:
                response = getattr(client, method)(path, data="{}", content_type="application/json", **headers)
            assert response.status_code == 401, (method, path, headers, response.status_code, response.content[:200])
            assert response["WWW-Authenticate"].startswith("Bearer"), (method, path)


def test_a_session_without_csrf_still_gets_403_and_a_token_needs_none(viewer_user, viewer_auth):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(viewer_user)
    response = client.post("/api/v1/tokens", {"name": "x"}, content_type="application/json")
    assert response.status_code == 403
    bearer = Client(enforce_csrf_checks=True)
    assert (
        bearer.post("/api/v1/tokens", {"name": "x"}, content_type="application/json", **viewer_auth).status_code == 201
    )
    # A refused token is not rescued by the session alongside it.
    refused = client.post(
        "/api/v1/tokens", {"name": "y"}, content_type="application/json", HTTP_AUTHORIZATION="Bearer pp_wrong"
    )
    assert refused.status_code == 401


# --- no open redirect -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "next_url", ["https://evil.example/", "//evil.example/x", "javascript:alert(1)", "http:/\\evil"]
)
def test_schedule_views_never_redirect_off_site(operator_client, schedule, next_url):
    for action in ("toggle", "run"):
        response = operator_client.post(f"/schedules/{schedule.id}/{action}/", {"next": next_url})
        assert response.status_code == 302 and response.url == "/settings/", (action, response.url)
    kept = operator_client.post(f"/schedules/{schedule.id}/toggle/", {"next": "/optimizer/"})
    assert kept.url == "/optimizer/"


# --- Content-Security-Policy -------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/login/", "/settings/", "/optimizer/", "/monitoring/explore/"])
def test_pages_carry_a_content_security_policy_without_inline_scripts(operator_client, path):
    response = operator_client.get(path, follow=True)
    policy = response["Content-Security-Policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";") if part.strip())
    assert directives["script-src"] == "'self'"
    assert directives["default-src"] == "'self'" and directives["frame-ancestors"] == "'none'"
    html = response.content.decode()
    assert not re.search(r"\son(change|submit|click|load)=", html)
