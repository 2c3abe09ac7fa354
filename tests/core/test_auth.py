from __future__ import annotations

import pytest
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
