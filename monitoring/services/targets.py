"""Targets: create, update, delete, test, and the control plane's own built-in targets.

A target is collected from its own row: the schedulers (monitoring/services/scheduling.py) claim it
when its `next_due_at` comes. Creating, enabling or editing one makes it due now, so a new target
(or a changed URL or interval) is collected at once and then every interval from there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

import psycopg
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from psycopg.conninfo import conninfo_to_dict

from core import outbound
from core.errors import InvalidInput
from core.services import audit_record
from monitoring.collectors.base import CollectorError, collector_for
from monitoring.models import DEFAULT_GROUP, GROUP_PATTERN, Target

KINDS_WITH_URL = {Target.Kind.POSTGRES, Target.Kind.REDIS, Target.Kind.CELERY, Target.Kind.PROMETHEUS}
URL_SCHEMES = {
    Target.Kind.POSTGRES: ("postgres://", "postgresql://"),
    Target.Kind.REDIS: ("redis://", "rediss://", "unix://"),
    Target.Kind.CELERY: ("redis://", "rediss://", "amqp://", "amqps://"),
    Target.Kind.PROMETHEUS: ("http://", "https://"),
}
MIN_INTERVAL, MAX_INTERVAL = 1, 86_400


def _validate_url(*, kind: str, url: str) -> None:
    if kind not in Target.Kind.values:
        raise InvalidInput(f"Unknown kind {kind!r}; choose one of {', '.join(Target.Kind.values)}.", field="kind")
    if kind in KINDS_WITH_URL:
        if not url:
            raise InvalidInput("This kind of target needs a URL.", field="url")
        if not url.startswith(URL_SCHEMES[kind]):
            raise InvalidInput(f"The URL must start with {' or '.join(URL_SCHEMES[kind])}.", field="url")
        try:
            split = urlsplit(url)
            split.port  # noqa: B018 (parsing the port is the check)
        except ValueError as exc:
            raise InvalidInput(f"The URL cannot be parsed: {exc}.", field="url") from exc
        if not split.hostname and not url.startswith("unix://"):
            raise InvalidInput("The URL needs a host name.", field="url")
        _check_outbound(kind=kind, url=url)
    elif url:
        raise InvalidInput("A host target reads this machine and takes no URL.", field="url")


def _check_outbound(*, kind: str, url: str) -> None:
    """The outbound policy at save time (core/outbound.py); the collector checks again at every connect."""
    try:
        if kind == Target.Kind.POSTGRES:
            try:
                params = conninfo_to_dict(url)
            except psycopg.Error as exc:
                raise InvalidInput("The URL cannot be parsed as a PostgreSQL URL.", field="url") from exc
            hosts = [h for h in (params.get("hostaddr") or params.get("host") or "").split(",") if h]
            for host in hosts or [""]:
                outbound.check_host_at_save(host or "/", what="The URL's host")
        else:
            outbound.check_url_at_save(url, what="The URL's host")
    except outbound.OutboundRefused as exc:
        raise outbound.refused_input(exc, field="url") from exc


def _validate_timing(*, interval_seconds: int, timeout_seconds: int) -> None:
    if not MIN_INTERVAL <= interval_seconds <= MAX_INTERVAL:
        raise InvalidInput(
            f"The interval must be between {MIN_INTERVAL} and {MAX_INTERVAL} seconds.", field="interval_seconds"
        )
    if not 1 <= timeout_seconds <= 300:
        raise InvalidInput("The timeout must be between 1 and 300 seconds.", field="timeout_seconds")
    if timeout_seconds > interval_seconds and interval_seconds < 300:
        raise InvalidInput("The timeout cannot be longer than the interval.", field="timeout_seconds")


def _validate_group(group: str) -> None:
    if not re.fullmatch(GROUP_PATTERN, group):
        raise InvalidInput(
            "A collector group is 1 to 40 lowercase letters, digits and inner hyphens (it names a queue).",
            field="group",
        )


def _validate(*, kind: str, url: str, interval_seconds: int, timeout_seconds: int) -> None:
    _validate_url(kind=kind, url=url)
    _validate_timing(interval_seconds=interval_seconds, timeout_seconds=timeout_seconds)


def target_input_problems(
    *, kind: str | None, url: str | None, interval_seconds: int | None, timeout_seconds: int | None
) -> list[InvalidInput]:
    """The URL and timing problems target_create would refuse, all of them rather than the first, so a
    form reports every one in one answer. A value given as None (the form already refused it) is skipped."""
    problems = []
    checks = []
    if kind is not None and url is not None:
        checks.append(lambda: _validate_url(kind=kind, url=url))
    if interval_seconds is not None and timeout_seconds is not None:
        checks.append(lambda: _validate_timing(interval_seconds=interval_seconds, timeout_seconds=timeout_seconds))
    for check in checks:
        try:
            check()
        except InvalidInput as exc:
            problems.append(exc)
    return problems


@dataclass(frozen=True)
class TargetInput:
    name: str
    kind: str
    url: str = ""
    interval_seconds: int = 10
    timeout_seconds: int = 5
    enabled: bool = True
    options: dict | None = None
    group: str = DEFAULT_GROUP
    pinned: bool = False


@transaction.atomic
def target_create(*, data: TargetInput, actor, via: str, builtin: bool = False) -> Target:
    name = data.name.strip()
    if not name:
        raise InvalidInput("A target needs a name.", field="name")
    if Target.objects.filter(name=name).exists():
        raise InvalidInput(f"A target named {name!r} exists already.", field="name")
    _validate(
        kind=data.kind, url=data.url, interval_seconds=data.interval_seconds, timeout_seconds=data.timeout_seconds
    )
    _validate_group(data.group)
    target = Target(
        name=name,
        kind=data.kind,
        interval_seconds=data.interval_seconds,
        timeout_seconds=data.timeout_seconds,
        enabled=data.enabled,
        options=data.options or {},
        group=data.group,
        builtin=builtin,
        next_due_at=timezone.now(),
        pinned=data.pinned,
    )
    target.url = data.url
    target.save()
    audit_record(actor=actor, via=via, action="target.create", object_repr=name, detail={"kind": data.kind})
    return target


_EDITED_FIELDS = (
    "name",
    "group",
    "pinned",
    "interval_seconds",
    "timeout_seconds",
    "enabled",
    "options",
    "url_encrypted",
    "url_display",
)


@transaction.atomic
def target_update(*, target: Target, changes: dict, actor, via: str) -> Target:
    """Apply the given fields. A blank or missing url keeps the stored one (it is never shown back)."""
    name = changes.get("name", target.name).strip()
    if not name:
        raise InvalidInput("A target needs a name.", field="name")
    if name != target.name and Target.objects.filter(name=name).exclude(pk=target.pk).exists():
        raise InvalidInput(f"A target named {name!r} exists already.", field="name")
    url = changes.get("url") or (target.url if target.url_encrypted else "")
    interval = changes.get("interval_seconds", target.interval_seconds)
    timeout = changes.get("timeout_seconds", target.timeout_seconds)
    _validate(kind=target.kind, url=url, interval_seconds=interval, timeout_seconds=timeout)
    group = changes.get("group") or target.group
    _validate_group(group)
    target.name = name
    target.group = group
    target.interval_seconds = interval
    target.timeout_seconds = timeout
    target.enabled = changes.get("enabled", target.enabled)
    target.pinned = changes.get("pinned", target.pinned)
    if "options" in changes and changes["options"] is not None:
        target.options = changes["options"]
    if changes.get("url"):
        target.url = changes["url"]
    # Due now: an enabled (or re-enabled) target, or one with a new URL or interval, is read at once.
    target.next_due_at = timezone.now()
    # Only what the edit owns: the health and collected_slot are the collections' to write meanwhile.
    target.save(update_fields=[*_EDITED_FIELDS, "next_due_at", "updated_at"])
    fields = sorted(k for k in changes if k != "url") + (["url"] if changes.get("url") else [])
    audit_record(actor=actor, via=via, action="target.update", object_repr=name, detail={"fields": fields})
    return target


@transaction.atomic
def target_delete(*, target: Target, actor, via: str) -> None:
    # First lock the row: a collection writing now (it holds a KEY SHARE lock) finishes before the
    # delete gathers the series it wrote; one starting later finds the target gone.
    Target.objects.select_for_update().filter(pk=target.pk).first()
    audit_record(actor=actor, via=via, action="target.delete", object_repr=target.name)
    target.delete()


@dataclass(frozen=True)
class ConnectionTest:
    ok: bool
    detail: str


def target_test_connection(*, target: Target) -> ConnectionTest:
    """An operator's explicit check, so it also tries a disabled target: testing before enabling one is
    what the button is for (nothing else connects to a disabled target)."""
    try:
        return ConnectionTest(ok=True, detail=collector_for(target).test_connection())
    except CollectorError as exc:
        return ConnectionTest(ok=False, detail=str(exc))
    except outbound.OutboundRefused as exc:
        return ConnectionTest(ok=False, detail=str(exc))
    except Exception as exc:  # report, never raise: this is a button for operators; no text of the server's
        return ConnectionTest(ok=False, detail=f"The connection test failed ({type(exc).__name__}).")


BUILTIN_TARGETS = (
    ("this-host", Target.Kind.HOST, lambda: ""),
    ("perfpilot-postgres", Target.Kind.POSTGRES, lambda: settings.DATABASE_URL),
    ("perfpilot-redis", Target.Kind.REDIS, lambda: settings.REDIS_URL),
    ("perfpilot-celery", Target.Kind.CELERY, lambda: settings.CELERY_BROKER_URL),
    ("perfpilot", Target.Kind.PERFPILOT, lambda: ""),  # its own events (runs, decisions, alerts) as series
)


def targets_register_builtin() -> list[str]:
    """Register the control plane's own host, PostgreSQL, Redis and Celery on first start.

    Afterwards only their URLs are kept in step with the settings (e.g. a changed port).
    """
    created = []
    for name, kind, url_of in BUILTIN_TARGETS:
        url = url_of()
        existing = Target.objects.filter(builtin=True, kind=kind).first()
        if existing is None:
            options = {"app": "config", "queues": list(settings.TASK_QUEUES)} if kind == Target.Kind.CELERY else {}
            target_create(
                data=TargetInput(name=name, kind=kind, url=url, options=options), actor=None, via="system", builtin=True
            )
            created.append(name)
        elif url and existing.url != url:
            existing.url = url
            existing.save(update_fields=["url_encrypted", "url_display", "updated_at"])
    return created
