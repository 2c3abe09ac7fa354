from __future__ import annotations

from django.http import HttpRequest

from core import __version__
from core.roles import ADMIN, OPERATOR, has_role, role_of


def perfpilot(request: HttpRequest) -> dict:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"perfpilot_version": __version__}
    return {
        "perfpilot_version": __version__,
        "user_role": role_of(user),
        "can_operate": has_role(user, OPERATOR),
        "can_admin": has_role(user, ADMIN),
    }
