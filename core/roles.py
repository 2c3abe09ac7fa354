"""Roles: viewer (reads), operator (runs actions), admin (also manages users).

Roles are Django groups, ordered so that each role includes the ones below it. Superusers are
admins. An admin is also staff, which opens the Django admin for managing users.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, Group
from django.core.exceptions import PermissionDenied
from django.db import transaction

VIEWER = "viewer"
OPERATOR = "operator"
ADMIN = "admin"
ROLES = (VIEWER, OPERATOR, ADMIN)
_RANK = {role: rank for rank, role in enumerate(ROLES)}


def role_of(user: AbstractBaseUser | AnonymousUser) -> str | None:
    """The highest role the user holds, or None."""
    if not user.is_authenticated or not user.is_active:
        return None
    if user.is_superuser:
        return ADMIN
    names = set(user.groups.values_list("name", flat=True))
    held = [role for role in ROLES if role in names]
    return held[-1] if held else None


def has_role(user: AbstractBaseUser | AnonymousUser, role: str) -> bool:
    held = role_of(user)
    return held is not None and _RANK[held] >= _RANK[role]


def ensure_role(user: AbstractBaseUser | AnonymousUser, role: str) -> None:
    """Raise PermissionDenied unless the user holds role (or a higher one)."""
    if not has_role(user, role):
        raise PermissionDenied(f"This needs the {role} role.")


def role_required(role: str) -> Callable:
    """View decorator: 403 unless the signed-in user holds role."""

    def decorator(view: Callable) -> Callable:
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            ensure_role(request.user, role)
            return view(request, *args, **kwargs)

        return wrapper

    return decorator


@transaction.atomic
def user_set_role(*, user: AbstractBaseUser, role: str) -> None:
    """Give the user exactly one role. Admins become superusers, so the Django admin is theirs."""
    if role not in ROLES:
        raise ValueError(f"Unknown role {role!r}; choose one of {', '.join(ROLES)}")
    groups = {name: Group.objects.get_or_create(name=name)[0] for name in ROLES}
    user.groups.remove(*groups.values())
    user.groups.add(groups[role])
    user.is_staff = user.is_superuser = role == ADMIN
    user.save(update_fields=["is_staff", "is_superuser"])
