"""`pageweight`: the Overview's first visit with an empty cache in Chromium, now and as it was served before.

Stores one hour of the key-chart series of the four built-in targets (a sample every 10 s), starts
gunicorn as `make run` does twice, with the static files served two ways (bench/pageweight_settings.py):
as production serves them now (collectstatic's hashed, gzipped files and the basic plotly.js bundle) and
as they were served before this change (the full plotly.js bundle of the plotly wheel, uncompressed, plain
names, max-age 60, and pages not gzipped). Debian's Chromium, signed in by a session cookie, opens the
Overview in a fresh browser context (an empty cache) and then once more in the same context (a warm
cache). Measured:

- bytes transferred: the sum of Chromium's encoded data length over every response (headers and
  compressed bodies, as on the wire);
- time until the charts are drawn: from navigation start until every chart of the page holds plotly's
  SVG (performance.now() in the page).
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
from datetime import timedelta
from pathlib import Path

import plotly
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client, override_settings
from django.utils import timezone
from playwright.sync_api import sync_playwright

from bench import BenchResult, Figure
from bench.http import key_series_reset
from bench.query import load_history
from bench.servers import web_server
from core.roles import VIEWER, user_set_role
from monitoring.services.rollups import MINUTE, floor_time

VISITS = 5  # per setup; the median is reported
MAX_FIRST_VISIT_BYTES = 1_500_000
CHROMIUM = os.environ.get("PERFPILOT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
WHEEL_PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"

# performance.now() once every chart holds plotly's drawing, else false (wait_for_function polls it).
CHARTS_DRAWN_JS = """() => {
  const charts = [...document.querySelectorAll('[data-figure]')];
  return charts.length > 0 && charts.every(c => c.querySelector('.main-svg')) && performance.now();
}"""


def run() -> BenchResult:
    series_ids = key_series_reset()
    now = floor_time(timezone.now(), MINUTE)
    load_history(series_ids, now - timedelta(hours=1), now + MINUTE)

    user, _ = get_user_model().objects.get_or_create(username="bench-pageweight")
    user_set_role(user=user, role=VIEWER)
    browser = Client()
    browser.force_login(user)
    session = browser.cookies["sessionid"].value

    work = Path(tempfile.mkdtemp(prefix="perfpilot-bench-static-"))
    try:
        static_root = work / "collected"
        with override_settings(
            STORAGES={"staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"}},
            STATIC_ROOT=static_root,
        ):
            call_command("collectstatic", interactive=False, verbosity=0)
        before_dir = work / "before"
        (before_dir / "vendor").mkdir(parents=True)
        shutil.copyfile(WHEEL_PLOTLY_JS, before_dir / "vendor" / "plotly.min.js")
        now_visits = _measure(
            "now", session, PERFPILOT_BENCH_STATIC="now", PERFPILOT_BENCH_STATIC_ROOT=str(static_root)
        )
        before_visits = _measure(
            "before", session, PERFPILOT_BENCH_STATIC="before", PERFPILOT_BENCH_STATIC_DIR=str(before_dir)
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)

    first_bytes, first_ms, charts, warm_bytes = (statistics.median(v) for v in zip(*now_visits, strict=True))
    base_bytes, base_ms, _, base_warm = (statistics.median(v) for v in zip(*before_visits, strict=True))
    figures = (
        Figure(
            "Overview first visit, empty cache: bytes transferred",
            _mb(first_bytes),
            f"< {_mb(MAX_FIRST_VISIT_BYTES)}",
            _mb(base_bytes),
            f"{first_bytes / base_bytes:.2f}",
            first_bytes < MAX_FIRST_VISIT_BYTES,
        ),
        Figure(
            f"Overview first visit, empty cache: time until its {charts:.0f} charts are drawn",
            f"{first_ms:.0f} ms",
            "",
            f"{base_ms:.0f} ms",
            f"{first_ms / base_ms:.2f}",
        ),
        Figure(
            "Overview second visit, warm cache: bytes transferred",
            _mb(warm_bytes),
            "",
            _mb(base_warm),
            f"{warm_bytes / base_warm:.2f}",
        ),
    )
    return BenchResult(
        name="pageweight",
        title="the Overview's weight in Chromium, first visit with an empty cache",
        setup=(
            f"Stored: 1 hour of {len(series_ids)} series (the key-chart series of the built-in targets) at one sample "
            "every 10 s. gunicorn started as `make run` starts it; Debian's Chromium (headless, Playwright), signed "
            f"in by a session cookie, on loopback without throttling; median of {VISITS} visits, each in a fresh "
            "browser context. Now: collectstatic's hashed, gzipped files through whitenoise (immutable, one year) "
            "and the basic plotly.js bundle; the page gzipped. Baseline, in the same run: the same page with the "
            "static files served as before this change (the plotly wheel's full plotly.js, uncompressed, plain "
            "names, max-age 60) and the page itself not gzipped. "
            "Bytes are Chromium's encoded data length of every response (headers and bodies as on the wire); "
            "the time runs from navigation start until every chart holds plotly's SVG."
        ),
        figures=figures,
        notes=(
            "On a network the gap widens: the baseline's plotly.js alone is 4.8 MB on the wire. A warm cache "
            "still costs the baseline a revalidation of every static file after 60 s; now the hashed files are "
            "never asked for again until they change."
        ),
    )


def _mb(count: float) -> str:
    return f"{count / 1_000_000:.2f} MB"


def _measure(label: str, session: str, **env: str) -> list[tuple[float, float, int, float]]:
    """(first-visit bytes, ms until charts drawn, charts, second-visit bytes) per visit, on a server with env."""
    saved = {name: os.environ.get(name) for name in ("DJANGO_SETTINGS_MODULE", *env)}
    os.environ.update({"DJANGO_SETTINGS_MODULE": "bench.pageweight_settings", **env})
    try:
        with web_server() as port:
            print(f"pageweight: {VISITS} visits to the Overview with static files served {label}…", flush=True)
            return _visits(f"http://127.0.0.1:{port}", session)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _visits(base_url: str, session: str) -> list[tuple[float, float, int, float]]:
    results = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for _ in range(VISITS):
                context = browser.new_context(viewport={"width": 1280, "height": 900})
                context.add_cookies([{"name": "sessionid", "value": session, "url": base_url}])
                page = context.new_page()
                first_bytes, drawn_ms, charts = _visit(page, base_url)
                warm_bytes, _, _ = _visit(page, base_url)
                results.append((first_bytes, drawn_ms, charts, warm_bytes))
                context.close()
        finally:
            browser.close()
    return results


def _visit(page, base_url: str) -> tuple[int, float, int]:
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    transferred = []
    cdp.on("Network.loadingFinished", lambda event: transferred.append(event["encodedDataLength"]))
    page.goto(f"{base_url}/", wait_until="commit")
    if "/login/" in page.url:
        raise SystemExit("pageweight: the session cookie did not sign in")
    drawn_ms = page.wait_for_function(CHARTS_DRAWN_JS, timeout=60_000, polling="raf").json_value()
    page.wait_for_load_state("networkidle")
    charts = page.locator("[data-figure]").count()
    cdp.detach()
    return sum(transferred), drawn_ms, charts
