"""How API callers authenticate: a bearer token or the browser's session; the docs need either."""

from __future__ import annotations

from functools import wraps

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, JsonResponse
from ninja.security import APIKeyCookie, HttpBearer

from core.roles import ensure_role
from core.services import api_token_authenticate, api_token_user_from_header


class BearerTokenAuth(HttpBearer):
    """`Authorization: Bearer pp_…` with a token created in Settings or by `create_api_token`."""

    def authenticate(self, request: HttpRequest, token: str):
        user = api_token_authenticate(token)
        if user is not None:
            request.user = user
        return user


class SessionAuth(APIKeyCookie):
    """The browser's login session (with CSRF checks on unsafe methods).

    The CSRF check runs only for a request that a session does authenticate and that tries no other
    credentials: a call with no session, an expired one, or a bearer token that was refused is
    unauthenticated (401 with WWW-Authenticate), not a CSRF failure (403). A logged-in browser's unsafe
    call without the CSRF token still gets 403.
    """

    param_name = "sessionid"

    def _get_key(self, request: HttpRequest) -> str | None:
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated or "Authorization" in request.headers:
            return None
        return super()._get_key(request)

    def authenticate(self, request: HttpRequest, key: str | None):
        user = getattr(request, "user", None)
        if key is None and "Authorization" in request.headers:
            return None  # a refused token is not rescued by a session
        if user is not None and user.is_authenticated and user.is_active:
            return user
        return None


def docs_require_auth(view):
    """The schema and its docs page need a session or a token too, like every other endpoint."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            return view(request, *args, **kwargs)
        if api_token_user_from_header(request.headers.get("Authorization", "")) is not None:
            return view(request, *args, **kwargs)
        if request.path.endswith(".json"):
            return JsonResponse({"detail": "Authentication required."}, status=401)
        return redirect_to_login(request.get_full_path())

    return wrapper


def bearer_user_or_refusal(request: HttpRequest, *, role: str) -> AbstractBaseUser | JsonResponse:
    """The protocol receivers' door: the user behind `Authorization: Bearer <token>` holding `role`,
    else the JSON answer to send back (401 with WWW-Authenticate without a valid token, 403 without the role)."""
    user = api_token_user_from_header(request.headers.get("Authorization", ""))
    if user is None:
        response = JsonResponse(
            {"detail": "Authentication required: send Authorization: Bearer <API token>.", "field": None}, status=401
        )
        response["WWW-Authenticate"] = "Bearer"
        return response
    try:
        ensure_role(user, role)
    except PermissionDenied as exc:
        return JsonResponse({"detail": str(exc), "field": None}, status=403)
    return user
