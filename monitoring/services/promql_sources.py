"""PromQL sources: the external Prometheus-compatible servers PromQL rules may read (create, change,
delete, test). The token is write-only: stored encrypted, never shown back, only whether one is set.
Every change is audited (without the token)."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.db import transaction
from django.db.models import ProtectedError
from django.utils import timezone

from core import outbound
from core.errors import Conflict, InvalidInput
from core.services import audit_record
from monitoring.models import PromQLSource
from monitoring.services.targets import ConnectionTest

NAME_PATTERN = r"^[-a-zA-Z0-9_]+$"
MAX_URL_LENGTH = 500
MIN_TIMEOUT, MAX_TIMEOUT = 0.5, 60.0
PROBE_EXPRESSION = "vector(1)"


@dataclass
class PromQLSourceInput:
    name: str
    url: str
    token: str | None = None  # None keeps the stored one (on change), "" removes it
    timeout_seconds: float = 10.0


def promql_source_validate(data: PromQLSourceInput, *, source: PromQLSource | None = None) -> PromQLSourceInput:
    data.name = (data.name or "").strip()
    if not data.name or len(data.name) > 100 or not re.match(NAME_PATTERN, data.name):
        raise InvalidInput("A source needs a name of at most 100 letters, digits, - and _.", field="name")
    if PromQLSource.objects.filter(name=data.name).exclude(pk=getattr(source, "pk", None)).exists():
        raise InvalidInput(f"A source named “{data.name}” exists already.", field="name")
    data.url = (data.url or "").strip()
    try:
        split = urlsplit(data.url)
        split.port  # noqa: B018 (parsing the port is the check)
    except ValueError as exc:
        raise InvalidInput(f"The URL cannot be parsed: {exc}.", field="url") from exc
    if split.scheme not in ("http", "https") or not split.hostname or len(data.url) > MAX_URL_LENGTH:
        raise InvalidInput(
            f"The URL must be an http:// or https:// URL with a host, at most {MAX_URL_LENGTH} characters.", field="url"
        )
    if split.username or split.password:
        # The URL is shown back; a secret belongs in the token, which is not.
        raise InvalidInput("Put credentials in the token, not in the URL (the URL is shown back).", field="url")
    if split.query or split.fragment:
        raise InvalidInput("The URL is the base of the API (e.g. http://prometheus:9090): no ? or #.", field="url")
    try:  # the outbound policy at save time; every query checks again when it connects
        outbound.check_url_at_save(data.url, what="The URL's host")
    except outbound.OutboundRefused as exc:
        raise outbound.refused_input(exc, field="url") from exc
    if data.token is not None:
        data.token = data.token.strip()
        if len(data.token) > 4096 or any(c in data.token for c in "\r\n\x00"):
            raise InvalidInput("The token is at most 4096 characters on one line.", field="token")
    if not MIN_TIMEOUT <= data.timeout_seconds <= MAX_TIMEOUT:
        raise InvalidInput(f"The timeout is {MIN_TIMEOUT} to {MAX_TIMEOUT:g} seconds.", field="timeout_seconds")
    return data


def _store(source: PromQLSource, data: PromQLSourceInput) -> None:
    source.name, source.url, source.timeout_seconds = data.name, data.url, data.timeout_seconds
    if data.token is not None:
        source.token = data.token
    source.save()


def _audit_detail(source: PromQLSource, data: PromQLSourceInput) -> dict:
    return {"url": source.url, "timeout_seconds": source.timeout_seconds, "token_changed": data.token is not None}


@transaction.atomic
def promql_source_create(*, data: PromQLSourceInput, actor, via: str) -> PromQLSource:
    data = promql_source_validate(data)
    source = PromQLSource()
    _store(source, data)
    detail = _audit_detail(source, data)
    audit_record(actor=actor, via=via, action="promql_source.create", object_repr=source.name, detail=detail)
    return source


@transaction.atomic
def promql_source_update(*, source: PromQLSource, changes: dict, actor, via: str) -> PromQLSource:
    """Change the fields given (a PATCH): a token left out stays, an empty one is removed."""
    current = {"name": source.name, "url": source.url, "timeout_seconds": source.timeout_seconds, "token": None}
    data = promql_source_validate(PromQLSourceInput(**{**current, **changes}), source=source)
    _store(source, data)
    detail = _audit_detail(source, data)
    audit_record(actor=actor, via=via, action="promql_source.update", object_repr=source.name, detail=detail)
    return source


@transaction.atomic
def promql_source_delete(*, source: PromQLSource, actor, via: str) -> None:
    """Refused (409) while rules read it: deleting it would silently change what they evaluate."""
    name = source.name
    try:
        source.delete()
    except ProtectedError as exc:
        users = sorted(f"{type(obj)._meta.verbose_name} “{obj}”" for obj in exc.protected_objects)
        raise Conflict(f"Rules read this source: {', '.join(users[:10])}. Change them first.") from exc
    audit_record(actor=actor, via=via, action="promql_source.delete", object_repr=name)


def promql_source_test(*, source: PromQLSource) -> ConnectionTest:
    """Ask the source for `vector(1)` now, as a rule would (token, timeout, outbound policy)."""
    from monitoring.promql.errors import PromQLError
    from monitoring.promql.sources import SourceUnavailable, instant_vector

    started = time.monotonic()
    try:
        instant_vector(PROBE_EXPRESSION, time_ms=round(timezone.now().timestamp() * 1000), source=source)
    except (PromQLError, SourceUnavailable) as exc:
        return ConnectionTest(False, str(exc))
    return ConnectionTest(True, f"answered a query in {(time.monotonic() - started) * 1000:.0f} ms")
