from __future__ import annotations

from django.test import override_settings

from core.checks import check_secret_key_source, check_urls


def _ids(messages) -> set[str]:
    return {message.id for message in messages}


def test_default_configuration_passes_the_url_checks():
    assert check_urls(None) == []


@override_settings(DATABASE_URL="mysql://x@y/z", REDIS_URL="memcached://x", PUBLIC_URL="localhost:8000")
def test_wrong_url_schemes_are_reported_with_ids():
    assert _ids(check_urls(None)) == {"config.E001", "config.E002", "config.E003"}


@override_settings(HEARTBEAT_INTERVAL_SECONDS=30.0, HEARTBEAT_STALE_SECONDS=10.0)
def test_heartbeat_stale_time_must_exceed_the_interval():
    assert _ids(check_urls(None)) == {"config.E004"}


@override_settings(
    FORWARD_REMOTE_WRITE_URL="mimir:9009/api/v1/push", FORWARD_REMOTE_WRITE_TOKEN="t", FORWARD_REMOTE_WRITE_USER="u"
)
def test_forwarding_needs_an_http_url_and_one_kind_of_credentials():
    assert _ids(check_urls(None)) == {"config.E006", "config.E007"}


@override_settings(SECRET_KEY_GENERATED=True)
def test_generated_secret_key_warns_for_deployments():
    assert _ids(check_secret_key_source(None)) == {"config.W001"}
