"""System checks for configuration that Django cannot validate on its own."""

from __future__ import annotations

from django.conf import settings
from django.core import checks


@checks.register(checks.Tags.security, deploy=True)
def check_secret_key_source(app_configs, **kwargs):
    if settings.SECRET_KEY_GENERATED:
        return [
            checks.Warning(
                "SECRET_KEY is not set; a generated key under PERFPILOT_VAR_DIR is in use.",
                hint="Set SECRET_KEY (or SECRET_KEY_FILE) so every web and worker node shares one key.",
                id="config.W001",
            )
        ]
    return []


@checks.register()
def check_urls(app_configs, **kwargs):
    errors = []
    if not settings.DATABASE_URL.startswith(("postgres://", "postgresql://")):
        errors.append(checks.Error("DATABASE_URL must be a PostgreSQL URL (postgresql://…).", id="config.E001"))
    if not settings.REDIS_URL.startswith(("redis://", "rediss://", "unix://")):
        errors.append(checks.Error("REDIS_URL must be a Redis URL (redis://…).", id="config.E002"))
    if not settings.PUBLIC_URL.startswith(("http://", "https://")):
        errors.append(checks.Error("PERFPILOT_PUBLIC_URL must start with http:// or https://.", id="config.E003"))
    if settings.HEARTBEAT_STALE_SECONDS <= settings.HEARTBEAT_INTERVAL_SECONDS:
        errors.append(
            checks.Error(
                "PERFPILOT_HEARTBEAT_STALE_SECONDS must be larger than PERFPILOT_HEARTBEAT_INTERVAL.",
                id="config.E004",
            )
        )
    forward = settings.FORWARD_REMOTE_WRITE_URL
    if forward and not forward.startswith(("http://", "https://")):
        errors.append(
            checks.Error("PERFPILOT_FORWARD_REMOTE_WRITE_URL must start with http:// or https://.", id="config.E006")
        )
    if settings.FORWARD_REMOTE_WRITE_TOKEN and settings.FORWARD_REMOTE_WRITE_USER:
        errors.append(
            checks.Error(
                "Set PERFPILOT_FORWARD_REMOTE_WRITE_TOKEN (bearer) or _USER and _PASSWORD (basic), not both.",
                id="config.E007",
            )
        )
    return errors


@checks.register()
def check_outbound_policy(app_configs, **kwargs):
    from core.outbound import parse_rules

    errors = []
    for name, items in (
        ("PERFPILOT_OUTBOUND_DENY", settings.OUTBOUND_DENY),
        ("PERFPILOT_OUTBOUND_ALLOW", settings.OUTBOUND_ALLOW),
    ):
        try:
            parse_rules(items, setting=name)
        except ValueError as exc:
            errors.append(checks.Error(str(exc), id="config.E005"))
    return errors
