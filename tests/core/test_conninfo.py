"""Connection strings: masked for display, scrubbed out of messages, bounded sessions."""

from __future__ import annotations

import pytest

from core.conninfo import bounded_conninfo, mask_url, scrub


@pytest.mark.parametrize(
    "url,shown",
    [
        ("postgresql://app:s3cret@db:5432/app", "postgresql://app:••••••@db:5432/app"),
        ("redis://:s3cret@cache:6379/0", "redis://:••••••@cache:6379/0"),
        ("redis://cache:6379/0", "redis://cache:6379/0"),
        ("postgresql://u:s3cret@[::1]:5432/x", "postgresql://u:••••••@[::1]:5432/x"),
        ("postgresql://u:s3cret@h:notaport/db", "postgresql://u:••••••@h:notaport/db"),
        ("host=db user=app password=s3cret dbname=app", "host=db user=app password=•••••• dbname=app"),
        ("postgresql://u:p%40ss@db/x?sslmode=require", "postgresql://u:••••••@db/x?sslmode=require"),
    ],
)
def test_passwords_are_masked_in_every_url_shape(url, shown):
    assert mask_url(url) == shown
    assert "s3cret" not in mask_url(url)


def test_scrub_removes_the_url_and_its_password_also_when_decoded_or_in_a_dsn():
    url = "postgresql://app:p%40ssword9@db:5432/app"
    message = f"connection to {url} failed: password p@ssword9 and p%40ssword9 refused"
    assert (
        scrub(message, url)
        == "connection to postgresql://app:••••••@db:5432/app failed: password •••••• and •••••• refused"
    )
    assert scrub("bad password s3cret", "host=db password=s3cret") == "bad password ••••••"
    assert scrub("redis said s3cret", "redis://:s3cret@cache:6379/0") == "redis said ••••••"


def test_masking_replaces_the_password_component_only():
    url = "postgresql://u:p@db:5432/app"
    assert mask_url(url) == "postgresql://u:••••••@db:5432/app"
    message = "connection to postgresql://u:p@db:5432/app failed: password p refused at port 5432 (postgresql)"
    assert scrub(message, url) == (
        "connection to postgresql://u:••••••@db:5432/app failed: password p refused at port 5432 (postgresql)"
    )
    # Another URL or DSN quoted in the message loses its password component too.
    assert (
        scrub("via redis://:x@cache:6379 and password=p", url) == "via redis://:••••••@cache:6379 and password=••••••"
    )
    assert scrub("http://h:8080/a@b", url) == "http://h:8080/a@b"  # a port is no password


def test_bounded_conninfo_keeps_the_urls_options_and_sets_its_timeouts_last():
    params = bounded_conninfo(
        "postgresql://app@db/app?options=-c%20work_mem%3D64MB",
        statement_timeout_ms=5000,
        lock_timeout_ms=1000,
        application_name="perfpilot-test",
        extra_options="-c default_transaction_read_only=on",
    )
    assert params["options"] == (
        "-c work_mem=64MB -c statement_timeout=5000 -c lock_timeout=1000 -c default_transaction_read_only=on"
    )
    assert (params["host"], params["dbname"], params["application_name"]) == ("db", "app", "perfpilot-test")


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("https://hooks.slack.com/services/T1/B2/secret", "https://hooks.slack.com/••••••"),
        ("http://alerts.internal:9093/hooks/secret", "http://alerts.internal:9093/••••••"),
        ("http://[::1]:8080/secret", "http://[::1]:8080/••••••"),
        ("http://h:notaport/secret", "http://h/••••••"),
    ],
)
def test_a_webhook_url_is_masked_to_its_scheme_host_and_port(url, masked):
    from core.conninfo import mask_webhook_url

    assert mask_webhook_url(url) == masked
