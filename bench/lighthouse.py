"""`lighthouse`: Lighthouse 12 accessibility and best-practices scores of the pages operators use most.

Runs npm's `lighthouse@12.2.3` (the Makefile installs it into bench/.lighthouse) with Debian's
Chromium against gunicorn started as `make run` starts it, signed in as an operator (the session
cookie goes in `--extra-headers`), on the Overview, a target page, the Optimizer and Alerts, each
with Lighthouse's mobile emulation and its desktop preset. The JSON and HTML reports are kept under
var/bench/lighthouse/ (not in git); the scores go to docs/benchmarks.md.
"""

from __future__ import annotations

import json
import os
import subprocess
from datetime import timedelta
from pathlib import Path

from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from bench import BenchResult, Figure
from bench.servers import ROOT, web_server
from core.roles import OPERATOR, user_set_role
from monitoring import storage
from monitoring.models import Target
from monitoring.services.targets import targets_register_builtin

LIGHTHOUSE = ROOT / "bench" / ".lighthouse" / "node_modules" / ".bin" / "lighthouse"
CHROMIUM = os.environ.get("PERFPILOT_CHROMIUM", "/usr/bin/chromium")
REPORTS = ROOT / "var" / "bench" / "lighthouse"
CATEGORIES = ("accessibility", "best-practices")
MIN_SCORE = 95
FORM_FACTORS = ("mobile", "desktop")


def _signed_in_cookie() -> str:
    user, _ = get_user_model().objects.get_or_create(username="bench-lighthouse")
    user_set_role(user=user, role=OPERATOR)
    browser = Client()
    browser.force_login(user)
    return f"sessionid={browser.cookies['sessionid'].value}"


def _pages() -> dict[str, str]:
    """The four pages, with an hour of samples so the charts have lines to draw."""
    targets_register_builtin()
    target = Target.objects.filter(kind=Target.Kind.POSTGRES).order_by("id").first()
    now = timezone.now()
    (series_id,) = storage.series_resolve(
        target_id=target.id, specs=[storage.SeriesSpec(metric="postgres_commits_per_second", labels={})]
    )
    storage.samples_write([(series_id, now - timedelta(minutes=60 - i), 20 + i % 9) for i in range(60)])
    return {
        "Overview": "/",
        "Target page": f"/monitoring/targets/{target.id}/",
        "Optimizer": "/optimizer/",
        "Alerts": "/alerts/",
    }


def _lighthouse(url: str, *, cookie: str, form_factor: str, report: Path) -> dict[str, int]:
    command = [
        str(LIGHTHOUSE),
        url,
        f"--only-categories={','.join(CATEGORIES)}",
        "--output=json",
        "--output=html",
        f"--output-path={report}",
        f"--extra-headers={json.dumps({'Cookie': cookie})}",
        "--chrome-flags=--headless --no-sandbox --disable-gpu --disable-background-networking",
        "--quiet",
    ]
    if form_factor == "desktop":
        command.append("--preset=desktop")
    subprocess.run(command, check=True, env={**os.environ, "CHROME_PATH": CHROMIUM}, timeout=300)
    result = json.loads(report.with_suffix(".report.json").read_text())
    return {category: round(result["categories"][category]["score"] * 100) for category in CATEGORIES}


def _failed_audits(report: Path) -> list[str]:
    result = json.loads(report.with_suffix(".report.json").read_text())
    failed = []
    for category in CATEGORIES:
        for ref in result["categories"][category]["auditRefs"]:
            audit = result["audits"][ref["id"]]
            if ref["weight"] and audit["score"] is not None and audit["score"] < 1:
                failed.append(audit["title"])
    return failed


def run() -> BenchResult:
    if not LIGHTHOUSE.exists():
        raise SystemExit(
            "the lighthouse benchmark needs npm's lighthouse: make bench installs it into bench/.lighthouse"
        )
    REPORTS.mkdir(parents=True, exist_ok=True)
    pages = _pages()
    cookie = _signed_in_cookie()
    figures = []
    failed_audits: dict[str, list[str]] = {}
    with web_server() as port:
        for page, path in pages.items():
            for form_factor in FORM_FACTORS:
                slug = f"{page.lower().replace(' ', '-')}-{form_factor}"
                report = REPORTS / slug
                scores = _lighthouse(
                    f"http://127.0.0.1:{port}{path}", cookie=cookie, form_factor=form_factor, report=report
                )
                for category, score in scores.items():
                    figures.append(
                        Figure(
                            name=f"{page} ({form_factor}): {category}",
                            value=str(score),
                            target=f"≥ {MIN_SCORE}",
                            passed=score >= MIN_SCORE,
                        )
                    )
                failed = _failed_audits(report)
                if failed:
                    failed_audits[f"{page} ({form_factor})"] = failed
    notes = ["Reports (JSON and HTML, one per page and form factor): `var/bench/lighthouse/`."]
    if failed_audits:
        notes.append("")
        notes.append("Audits that did not pass in full:")
        notes += [f"- {where}: {'; '.join(titles)}" for where, titles in failed_audits.items()]
    return BenchResult(
        name="lighthouse",
        title="Lighthouse accessibility and best practices",
        setup=(
            "Lighthouse 12.2.3 (npm) with Debian's Chromium against gunicorn as `make run` starts it, signed in "
            "as an operator (session cookie via `--extra-headers`); the four built-in targets, an hour of samples "
            "for one series. Each page with Lighthouse's default mobile emulation and with `--preset=desktop`."
        ),
        figures=tuple(figures),
        notes="\n".join(notes),
    )
