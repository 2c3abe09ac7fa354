"""Alertmanager API v2, the part Prometheus and the tools around it use, under /alertmanager/.

Prometheus (`alerting.alertmanagers` with `path_prefix: /alertmanager`, `api_version: v2`) only
POSTs `/api/v2/alerts`; people and tools (Grafana's Alertmanager datasource, amtool, probes) ask
`/api/v2/status`, `/-/healthy` and `/-/ready`. Posting needs an operator's API token (bearer),
reading the status any role's; the health probes answer anyone, as Alertmanager's do. Errors are
Alertmanager's: a JSON string saying why, with the field in our usual {"detail", "field"} shape.
"""

from __future__ import annotations

import json

from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from alerts.selectors import alertmanager_status
from alerts.services.external import alerts_parse, alerts_receive
from core.auth import bearer_user_or_refusal
from core.errors import InvalidInput
from core.roles import OPERATOR, VIEWER


@csrf_exempt
@login_not_required
@require_POST
def alerts_post(request: HttpRequest) -> HttpResponse:
    user = bearer_user_or_refusal(request, role=OPERATOR)
    if isinstance(user, HttpResponse):
        return user
    if request.content_type != "application/json":
        return JsonResponse({"detail": "Send the alerts as application/json.", "field": "Content-Type"}, status=415)
    try:
        payload = json.loads(request.body or b"null")
    except (ValueError, UnicodeDecodeError) as exc:
        return JsonResponse({"detail": f"The body is not JSON: {exc}.", "field": "body"}, status=400)
    try:
        alerts_receive(alerts=alerts_parse(payload), actor=user)
    except InvalidInput as exc:
        return JsonResponse({"detail": str(exc), "field": exc.field}, status=exc.status_code)
    return HttpResponse(status=200)


@login_not_required
@never_cache
@require_GET
def status(request: HttpRequest) -> HttpResponse:
    user = bearer_user_or_refusal(request, role=VIEWER)
    if isinstance(user, HttpResponse):
        return user
    return JsonResponse(alertmanager_status())


@login_not_required
@never_cache
@require_http_methods(["GET", "HEAD"])
def probe(request: HttpRequest) -> HttpResponse:
    """`/-/healthy` and `/-/ready`: Alertmanager answers both with a plain "OK" once it serves."""
    return HttpResponse("OK", content_type="text/plain; charset=utf-8")
