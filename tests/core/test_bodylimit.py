"""Request bodies past their limit are a 413 in JSON, declared or chunked, through a real gunicorn."""

from __future__ import annotations

import http.client
import json
import time
from urllib.parse import urlsplit

import pytest

from core.roles import OPERATOR
from core.services import api_token_create
from tests.conftest import _make_user

MB = 1024 * 1024


@pytest.fixture
def small_limit(settings):
    settings.PERFPILOT_MAX_REQUEST_BYTES = 64 * 1024
    settings.REQUEST_BODY_LIMITS = {"/api/v1/metrics": 4 * MB}


@pytest.mark.django_db
def test_a_body_over_the_limit_is_a_413_naming_the_limit(anonymous_client, operator_auth, small_limit):
    body = json.dumps({"name": "x" * (65 * 1024)})
    response = anonymous_client.post("/api/v1/tokens", body, content_type="application/json", **operator_auth)
    assert response.status_code == 413
    assert response.json() == {
        "detail": "The request body is larger than the 65,536 bytes this endpoint takes.",
        "field": "body",
    }


@pytest.mark.django_db
def test_an_html_form_post_over_the_limit_is_a_413_too(anonymous_client, small_limit):
    response = anonymous_client.post("/login/", {"username": "x" * (65 * 1024), "password": "p"})
    assert response.status_code == 413
    assert response.json()["field"] == "body"


@pytest.mark.django_db
def test_push_ingestion_takes_a_body_past_the_general_limit(
    anonymous_client, operator_auth, small_limit, clean_samples
):
    now = int(time.time())
    points = [[now - 3000 + i, i / 7] for i in range(3000)]  # ~90 KB: over 64 KiB, under 4 MiB
    body = json.dumps({"series": [{"metric": "bodylimit_test", "points": points}]})
    assert 64 * 1024 < len(body) < 4 * MB
    response = anonymous_client.post("/api/v1/metrics", body, content_type="application/json", **operator_auth)
    assert response.status_code == 202, response.content
    assert response.json()["accepted"] == 3000


# --- through gunicorn, as `make run` serves -----------------------------------------------------


@pytest.fixture
def operator_token(transactional_db) -> str:
    return api_token_create(user=_make_user("bodylimit-operator", OPERATOR), name="bodylimit", via="command").raw


def _post(url: str, path: str, token: str, body, *, chunked: bool = False) -> tuple[int, dict]:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    if chunked:
        connection.request("POST", path, body=iter(body), headers=headers, encode_chunked=True)
    else:
        connection.request("POST", path, body=body, headers=headers)
    response = connection.getresponse()
    status, payload = response.status, response.read()
    connection.close()
    return status, json.loads(payload)


def _chunks(total: int, size: int = MB):
    sent = 0
    while sent < total:
        yield b" " * min(size, total - sent)
        sent += size


@pytest.mark.parametrize("path", ["/api/v1/tokens", "/api/v1/targets", "/api/v1/metrics"])
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_36_mb_body_on_a_post_is_a_413_from_gunicorn(web_server_url, operator_token, path, chunked):
    body = list(_chunks(36 * MB)) if chunked else b" " * (36 * MB)
    status, answer = _post(web_server_url, path, operator_token, body, chunked=chunked)
    assert status == 413
    assert answer["field"] == "body" and "bytes this endpoint takes" in answer["detail"]


def test_a_chunked_body_under_the_limit_is_read_whole(web_server_url, operator_token):
    body = json.dumps({"name": "chunked"}).encode()
    status, answer = _post(web_server_url, "/api/v1/tokens", operator_token, [body[:5], body[5:]], chunked=True)
    assert status == 201, answer
    assert answer["name"] == "chunked"


def test_gunicorn_takes_the_ingest_benchmark_batches_and_larger(web_server_url, operator_token, clean_samples):
    from bench.ingest import BATCH, SERIES_PER_BATCH, _bodies

    start = time.time() - 86_400
    status, answer = _post(web_server_url, "/api/v1/metrics", operator_token, _bodies(start)[0])
    assert status == 202, answer
    assert answer == {"accepted": BATCH, "series": SERIES_PER_BATCH}
    series = [
        {"metric": "bodylimit_big", "labels": {"n": str(n)}, "points": [[start + i, i / 7] for i in range(2000)]}
        for n in range(50)
    ]
    body = json.dumps({"series": series}).encode()
    assert len(body) > MB  # past the general limit: only the ingest limit lets it in
    status, answer = _post(web_server_url, "/api/v1/metrics", operator_token, body)
    assert status == 202, answer
    assert answer == {"accepted": 100_000, "series": 50}
