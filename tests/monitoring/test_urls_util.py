from __future__ import annotations

import pytest

from monitoring.urls_util import mask_url


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
