"""Static files in production: hashed names, gzip copies and a long cache (config/settings.py STORAGES).

Test settings keep Django's plain storage (no collectstatic before each test run); these tests run
collectstatic with the production storage into a temporary STATIC_ROOT and ask whitenoise for the files.
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import plotly
import pytest
from django.core.management import call_command
from django.test import Client, override_settings

PRODUCTION_STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
VENDORED_PLOTLY = Path(__file__).resolve().parent.parent / "static" / "vendor" / "plotly.min.js"


def test_production_settings_use_the_compressed_manifest_storage():
    from config import settings

    assert settings.STORAGES["staticfiles"]["BACKEND"] == PRODUCTION_STORAGES["staticfiles"]["BACKEND"]


@pytest.fixture
def collected_static(tmp_path):
    with override_settings(STORAGES=PRODUCTION_STORAGES, STATIC_ROOT=tmp_path, WHITENOISE_USE_FINDERS=False):
        call_command("collectstatic", interactive=False, verbosity=0)
        yield tmp_path


def test_pages_link_plotly_by_a_content_hashed_name_served_gzipped_with_a_long_cache(collected_static, viewer_client):
    client = viewer_client  # its handler starts at the first request, so whitenoise sees the collected files
    html = client.get("/").content.decode()
    hashed = re.search(r'src="(/static/vendor/plotly\.min\.[0-9a-f]{12}\.js)"', html)
    assert hashed, "the Overview links plotly.js by its hashed name"

    response = client.get(hashed.group(1), HTTP_ACCEPT_ENCODING="gzip")
    assert response.status_code == 200
    assert response["Content-Encoding"] == "gzip"
    assert "max-age=315360000" in response["Cache-Control"]
    assert "immutable" in response["Cache-Control"]
    body = gzip.decompress(b"".join(response.streaming_content))
    assert body == VENDORED_PLOTLY.read_bytes()
    assert int(response["Content-Length"]) < 500_000  # 1.2 MB of JavaScript on the wire as gzip


def test_the_plain_name_of_a_static_file_is_cached_only_briefly(collected_static, db):
    response = Client().get("/static/js/perfpilot.js")
    assert response.status_code == 200
    assert "max-age=60" in response["Cache-Control"]
    assert "immutable" not in response["Cache-Control"]


def test_vendored_plotly_is_the_basic_bundle_of_the_plotly_js_version_the_python_package_ships():
    """Tests validate figures with the Python package; the browser must draw them with the same plotly.js."""
    wheel_js = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    wheel_version = re.search(rb"plotly\.js v(\d+\.\d+\.\d+)", wheel_js.read_bytes()[:300]).group(1)
    vendored_header = VENDORED_PLOTLY.read_bytes()[:300]
    assert b"plotly.js (basic - minified) v" + wheel_version in vendored_header


def test_pages_are_sent_gzipped_to_browsers_that_accept_it(viewer_client):
    plain = viewer_client.get("/")
    compressed = viewer_client.get("/", HTTP_ACCEPT_ENCODING="gzip, deflate, br")
    assert "Content-Encoding" not in plain
    assert compressed["Content-Encoding"] == "gzip"
    assert b"Overview" in gzip.decompress(compressed.content)


def test_api_answers_stay_uncompressed_for_automation(viewer_client):
    response = viewer_client.get("/api/v1/performance/status", HTTP_ACCEPT_ENCODING="gzip")
    assert response.status_code == 200
    assert "Content-Encoding" not in response
    assert response.json()
