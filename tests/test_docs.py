"""The docs and deployment files tell the same story as the code."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
ENV_CALL = re.compile(r"env(?:str|bool|int|float|list|choice)\(\s*\"([A-Z0-9_]+)\"")


def _variables_read_by_the_code() -> set[str]:
    names = set()
    for path in (ROOT / "config").rglob("*.py"):
        names |= set(ENV_CALL.findall(path.read_text()))
    return names


def test_the_code_reads_the_variables_we_expect():
    assert {"DATABASE_URL", "REDIS_URL", "SECRET_KEY", "PERFPILOT_BIND"} <= _variables_read_by_the_code()


def test_every_variable_is_in_env_example_and_the_readme():
    env_example = (ROOT / ".env.example").read_text()
    readme = (ROOT / "README.md").read_text()
    missing_example = sorted(n for n in _variables_read_by_the_code() if n not in env_example)
    missing_readme = sorted(n for n in _variables_read_by_the_code() if f"`{n}`" not in readme)
    assert missing_example == []
    assert missing_readme == []


def test_readme_starts_with_what_perfpilot_is_and_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    assert readme.startswith("# Perfpilot\n\nPerfpilot is a self-hosted performance control plane")
    quick_start = readme.index("## Quick start")
    assert (
        readme.index("make run", quick_start)
        < readme.index("make test", quick_start)
        < readme.index("## ", quick_start + 3)
    )


def test_compose_defines_its_services_on_the_same_variables():
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"postgres", "redis", "rabbitmq", "web", "worker", "beat", "scheduler"}
    assert services["rabbitmq"]["profiles"] == ["rabbitmq"]  # only started when asked for
    web_env = services["web"]["environment"]
    for name in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "CELERY_BROKER_URL"):
        assert name in web_env
        assert all(name in services[s]["environment"] for s in ("worker", "beat", "scheduler"))
    assert "pgvector" in compose["services"]["postgres"]["image"]
    assert "shared_preload_libraries=pg_stat_statements" in compose["services"]["postgres"]["command"]


def test_ci_runs_make_test_and_fails_on_no_tests():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci
    assert '"$code" -eq 5' in ci


def test_no_template_or_static_file_loads_from_a_cdn():
    pattern = re.compile(r"cdn\.|unpkg\.com|jsdelivr|cdnjs|googleapis")
    offenders = [
        str(path.relative_to(ROOT))
        for folder in ("templates", "static")
        for path in (ROOT / folder).rglob("*")
        # static/vendor holds third-party dist files as published: plotly.js keeps a default topojson URL
        # for geo maps, a trace type its basic bundle does not contain. tests/e2e/test_charts.py checks
        # in Chromium that a page with charts asks no other host for anything.
        if path.is_file() and "vendor" not in path.parts and pattern.search(path.read_text(errors="ignore"))
    ]
    assert offenders == []


def test_docs_api_md_names_every_operation_of_the_api():
    from config.api import api

    lines = (ROOT / "docs" / "api.md").read_text().splitlines()
    missing = []
    for path, operations in api.get_openapi_schema()["paths"].items():
        short = path.removeprefix("/api/v1")
        for method in operations:
            named = any(re.search(rf"{re.escape(short)}(?![\w/{{])", line) and method.upper() in line for line in lines)
            if not named:
                missing.append(f"{method.upper()} {short}")
    assert missing == []
