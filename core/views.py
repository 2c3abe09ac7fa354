"""Control-plane pages: Settings, health probes and /metrics. Thin by design."""

from __future__ import annotations

import sys

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.templatetags.static import static
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST, require_safe
from django.views.defaults import page_not_found as default_page_not_found
from django.views.defaults import server_error as default_server_error
from django_celery_beat.models import PeriodicTask

from core.forms import ApiTokenForm, form_submit
from core.health import control_plane_status
from core.htmx import render_page
from core.metrics import metrics_exposition
from core.models import ApiToken
from core.outages import outage_answer
from core.queueing import QueueUnavailable
from core.registry import registry
from core.roles import ADMIN, OPERATOR, has_role, role_required
from core.selectors import api_token_list, audit_event_list, schedule_list, section_summary
from core.services import (
    api_token_create,
    api_token_revoke,
    api_token_user_from_header,
    schedule_run_now,
    schedule_set_enabled,
)


def _settings_context(request: HttpRequest, **extra) -> dict:
    return {
        "tokens": api_token_list(user=request.user),
        "token_form": ApiTokenForm(),
        "schedules": schedule_list(section="settings"),
        "audit_events": audit_event_list(limit=30),
        **extra,
    }


@require_GET
def settings_page(request: HttpRequest) -> HttpResponse:
    return render(request, "core/settings.html", _settings_context(request))


@require_POST
def token_create(request: HttpRequest) -> HttpResponse:
    form = ApiTokenForm(request.POST)
    issued = form_submit(form, lambda data: api_token_create(user=request.user, name=data["name"], via="ui"))
    status = 200 if issued else 422  # 422: htmx is configured to swap it, showing the field errors
    context = _settings_context(request, token_form=form if issued is None else ApiTokenForm(), issued=issued)
    return render_page(request, "core/settings.html", context, fragment="tokens", status=status)


@require_POST
def token_revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    tokens = ApiToken.objects.all() if has_role(request.user, ADMIN) else ApiToken.objects.filter(user=request.user)
    token = get_object_or_404(tokens, pk=token_id)
    api_token_revoke(token=token, actor=request.user, via="ui")
    return render_page(request, "core/settings.html", _settings_context(request), fragment="tokens")


@require_POST
@role_required(OPERATOR)
def schedule_run(request: HttpRequest, schedule_id: int) -> HttpResponse:
    task = get_object_or_404(PeriodicTask, pk=schedule_id)
    try:
        task_id = schedule_run_now(periodic_task=task, actor=request.user, via="ui")
    except QueueUnavailable as exc:
        messages.error(request, f"“{task.name}” was not sent: {exc}")
    else:
        messages.success(request, f"“{task.name}” sent to the workers (task {task_id[:8]}).")
    return redirect(safe_next(request, "settings"))


@require_POST
@role_required(OPERATOR)
def schedule_toggle(request: HttpRequest, schedule_id: int) -> HttpResponse:
    task = get_object_or_404(PeriodicTask, pk=schedule_id)
    schedule_set_enabled(periodic_task=task, enabled=not task.enabled, actor=request.user, via="ui")
    messages.success(request, f"“{task.name}” {'enabled' if task.enabled else 'disabled'}.")
    return redirect(safe_next(request, "settings"))


def safe_next(request: HttpRequest, default: str) -> str:
    """The form's `next` if it is a URL on this site, else `default` (a URL name): never an open redirect."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return default


def section_context(section: str) -> dict:
    """Context shared by the Monitoring, Optimizer, Scaling and Alerts pages."""
    return section_summary(section=section)


def _authenticated(request: HttpRequest) -> bool:
    """A logged-in session or a valid API token (these probes are open to anonymous callers too)."""
    if request.user.is_authenticated:
        return True
    return api_token_user_from_header(request.headers.get("Authorization", "")) is not None


@login_not_required
@never_cache
def healthz(request: HttpRequest) -> HttpResponse:
    """Liveness: answers while the process can serve requests; touches no dependency."""
    return JsonResponse({"status": "ok"})


@login_not_required
@never_cache
def readyz(request: HttpRequest) -> HttpResponse:
    """Readiness: 200 when PostgreSQL, Redis, a worker and beat are all healthy, else 503.

    Anyone may ask (load balancers do), so an anonymous caller learns only which component is down; a
    session or an API token also sees each check's detail (versions, errors)."""
    status = control_plane_status()
    detailed = _authenticated(request)
    body = {
        "status": "ok" if status.healthy else "unavailable",
        "failed": status.failed,
        "checks": {c.name: {"ok": c.ok, "detail": c.detail} if detailed else {"ok": c.ok} for c in status.checks},
    }
    response = JsonResponse(body, status=200 if status.healthy else 503)
    # A probe's 503 is its answer, not a server error: no "Service Unavailable" line per poll.
    response._has_been_logged = True
    return response


@login_not_required
@never_cache
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus exposition. Needs a session or an API token unless PERFPILOT_METRICS_PUBLIC."""
    if not settings.METRICS_PUBLIC and not _authenticated(request):
        message = "Authentication required: send Authorization: Bearer <token>."
        response = JsonResponse({"detail": message}, status=401)
        response["WWW-Authenticate"] = "Bearer"
        return response
    # Apps add what they expose at scrape time through the registry (monitoring: collected series).
    extra = tuple(collector() for collector in registry.all("metrics").values())
    payload, content_type = metrics_exposition(extra_collectors=extra)
    return HttpResponse(payload, content_type=content_type)


def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """404s under /api/ are JSON like every other API answer; pages keep Django's HTML 404."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found."}, status=404)
    return default_page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500: an outage of PostgreSQL or Redis met before the view (loading the session or the
    user, in a middleware) is a 503 like one met in a view; anything else is Django's 500 page."""
    return outage_answer(request, sys.exc_info()[1]) or default_server_error(request)


@login_not_required
@require_safe
def favicon(request: HttpRequest) -> HttpResponse:
    """Browsers ask for /favicon.ico whatever the page says: send them to the (content-hashed) svg."""
    response = redirect(static("img/perfpilot.svg"))
    response["Cache-Control"] = "public, max-age=86400"
    return response
