"""Writes owned by the control plane: API tokens, audit events, the first operator account."""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone
from django.utils.module_loading import import_string
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask
from django_celery_beat.validators import crontab_validator

from core.errors import InvalidInput
from core.models import ApiToken, AuditEvent
from core.registry import registry
from core.roles import ADMIN, user_set_role
from core.schedules import DefaultSchedule

logger = logging.getLogger(__name__)

TOKEN_PREFIX = "pp_"  # noqa: S105 (a marker, not a secret)


def token_digest(raw: str) -> str:
    # Tokens carry 256 random bits, so a fast hash is safe here (unlike passwords) and lets
    # every API request look the token up by digest in one indexed query.
    return hashlib.sha256(raw.encode()).hexdigest()


@dataclass(frozen=True)
class IssuedToken:
    token: ApiToken
    raw: str  # shown once, never stored


def audit_record(
    *,
    actor: AbstractBaseUser | None,
    via: str,
    action: str,
    object_repr: str = "",
    result: str = AuditEvent.Result.OK,
    detail: dict | None = None,
) -> AuditEvent:
    name = actor.get_username() if actor is not None and actor.is_authenticated else "system"
    return AuditEvent.objects.create(
        actor=actor if actor is not None and actor.is_authenticated else None,
        actor_name=name,
        via=via,
        action=action,
        object_repr=object_repr[:200],
        result=result,
        detail=detail or {},
    )


@transaction.atomic
def api_token_create(*, user: AbstractBaseUser, name: str, via: str) -> IssuedToken:
    name = name.strip()
    if not name:
        raise InvalidInput("A token needs a name.", field="name")
    if len(name) > 100:
        raise InvalidInput("A token name has at most 100 characters.", field="name")
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(user=user, name=name, prefix=raw[:10], digest=token_digest(raw))
    audit_record(actor=user, via=via, action="api_token.create", object_repr=str(token))
    return IssuedToken(token=token, raw=raw)


@transaction.atomic
def api_token_revoke(*, token: ApiToken, actor: AbstractBaseUser, via: str) -> ApiToken:
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
    audit_record(actor=actor, via=via, action="api_token.revoke", object_repr=str(token))
    return token


def api_token_authenticate(raw: str) -> AbstractBaseUser | None:
    """The active user behind a raw bearer token, or None. Records when the token was used."""
    if not raw.startswith(TOKEN_PREFIX):
        return None
    # Every API call authenticates: one hand-written query (the user's row with its token's id and
    # last use) instead of compiling an ORM join per request, which cost more than the endpoint.
    user_model = get_user_model()
    found = list(
        user_model.objects.raw(
            f"SELECT u.*, t.id AS api_token_id, t.last_used_at AS api_token_last_used_at "  # noqa: S608
            f"FROM {ApiToken._meta.db_table} t JOIN {user_model._meta.db_table} u ON u.id = t.user_id "
            "WHERE t.digest = %s AND t.revoked_at IS NULL AND u.is_active",
            [token_digest(raw)],
        )
    )
    if not found:
        return None
    user = found[0]
    now = timezone.now()
    # Touch at most once per interval so that a busy client does not write on every request.
    stale_before = now - timedelta(seconds=settings.API_TOKEN_TOUCH_SECONDS)
    if user.api_token_last_used_at is None or user.api_token_last_used_at < stale_before:
        ApiToken.objects.filter(pk=user.api_token_id).update(last_used_at=now)
    return user


@dataclass(frozen=True)
class BootstrapResult:
    username: str
    created: bool
    generated_password: str | None


def operator_bootstrap() -> BootstrapResult:
    """Create the first account on first start. It holds the admin role, so it can add others.

    The password comes from PERFPILOT_OPERATOR_PASSWORD, or is generated and returned once for
    the caller to print; it is never stored in clear anywhere.
    """
    user_model = get_user_model()
    username = settings.OPERATOR_USERNAME
    if user_model.objects.exists():
        return BootstrapResult(username=username, created=False, generated_password=None)
    password = settings.OPERATOR_PASSWORD
    generated = None
    if not password:
        generated = password = secrets.token_urlsafe(15)
    with transaction.atomic():
        user = user_model.objects.create_user(username=username, email=settings.OPERATOR_EMAIL, password=password)
        user_set_role(user=user, role=ADMIN)
        audit_record(actor=None, via="system", action="user.bootstrap", object_repr=username)
    return BootstrapResult(username=username, created=True, generated_password=generated)


# --- schedules ------------------------------------------------------------------------------


def crontab_get_or_create(*, expression: str) -> CrontabSchedule:
    """The crontab row for "minute hour day_of_month month_of_year day_of_week", in the project's time zone."""
    try:
        crontab_validator(expression)
        minute, hour, day_of_month, month_of_year, day_of_week = expression.split()
    except Exception as exc:  # the validator raises ValidationError; a wrong field count, ValueError
        reason = "; ".join(getattr(exc, "messages", None) or [str(exc)])
        raise InvalidInput(
            f"A crontab has 5 fields (minute hour day month weekday), e.g. '30 2 * * *' ({reason}).", field="crontab"
        ) from exc
    schedule, _ = CrontabSchedule.objects.get_or_create(
        minute=minute,
        hour=hour,
        day_of_month=day_of_month,
        month_of_year=month_of_year,
        day_of_week=day_of_week,
        timezone=settings.TIME_ZONE,
    )
    return schedule


def schedule_sync_defaults() -> list[str]:
    """Create the default beat schedules that do not exist yet; never overwrite user edits.

    The project's own (settings.DEFAULT_SCHEDULES) come first, then those plug-ins registered
    under "schedules" (each tuner's, for instance).
    """
    entries: list[DefaultSchedule] = [*import_string(settings.DEFAULT_SCHEDULES), *registry.all("schedules").values()]
    created = []
    for entry in entries:
        if PeriodicTask.objects.filter(name=entry.name).exists():
            continue
        fields: dict = {"name": entry.name, "task": entry.task, "description": entry.description}
        if entry.kwargs:
            fields["kwargs"] = json.dumps(entry.kwargs)
        if entry.queue:
            fields["queue"] = entry.queue
        if entry.expire_seconds:
            fields["expire_seconds"] = entry.expire_seconds
        if entry.every_seconds is not None:
            fields["interval"], _ = IntervalSchedule.objects.get_or_create(
                every=entry.every_seconds, period=IntervalSchedule.SECONDS
            )
        else:
            fields["crontab"] = crontab_get_or_create(expression=entry.crontab)
        PeriodicTask.objects.create(**fields)
        created.append(entry.name)
    return created


def schedule_run_now(*, periodic_task, actor: AbstractBaseUser, via: str) -> str:
    """Send a scheduled task to the workers now, with its stored arguments. Returns the task id.

    Raises QueueUnavailable (bounded, a few seconds at most) when the broker does not take it."""
    from core.queueing import task_send

    options = {"queue": periodic_task.queue} if periodic_task.queue else {}
    task_id = task_send(
        periodic_task.task,
        args=json.loads(periodic_task.args or "[]"),
        kwargs=json.loads(periodic_task.kwargs or "{}"),
        **options,
    )
    audit_record(
        actor=actor,
        via=via,
        action="schedule.run_now",
        object_repr=periodic_task.name,
        detail={"task": periodic_task.task, "task_id": task_id},
    )
    return task_id


def schedule_set_enabled(*, periodic_task, enabled: bool, actor: AbstractBaseUser, via: str):
    periodic_task.enabled = enabled
    periodic_task.save(update_fields=["enabled"])
    audit_record(
        actor=actor,
        via=via,
        action="schedule.enable" if enabled else "schedule.disable",
        object_repr=periodic_task.name,
    )
    return periodic_task


def api_token_user_from_header(authorization: str) -> AbstractBaseUser | None:
    """The user behind an `Authorization: Bearer <token>` header value, or None."""
    scheme, _, raw = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return api_token_authenticate(raw.strip())
