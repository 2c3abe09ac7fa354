"""`fuzz`: schemathesis, every check and every phase (stateful included), against a running gunicorn.

`make fuzz` runs it. The server is gunicorn as `make run` starts it, on the bench's own embedded
PostgreSQL and Redis; its Python refuses any connection off this machine (bench/loopback_only).
Operations that connect to an address taken from input are left out, as in tests/api/test_fuzz.py.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import BenchResult, Figure
from bench.servers import web_server
from core.models import ApiToken
from core.roles import ADMIN, user_set_role
from core.services import api_token_create

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = int(os.environ.get("PERFPILOT_FUZZ_EXAMPLES", "100"))
PHASES = "examples,coverage,fuzzing,stateful"
# Operations that open connections to addresses taken from the input or stored by it.
CONNECTING_OPERATIONS = (
    r"^/api/v1/(targets/\{target_id\}/test|performance/alerts/channels/\{channel_id\}/test"
    r"|performance/benchmark|performance/scaling/execute)$"
)


def _admin_token() -> str:
    from django.contrib.auth import get_user_model

    user, _ = get_user_model().objects.get_or_create(username="bench-fuzz")
    user_set_role(user=user, role=ADMIN)
    issued = api_token_create(user=user, name="fuzz", via="command")
    # DELETE /tokens/{token_id} is fuzzed too, and small ids are the first it tries: a token with id
    # 1 revoked itself mid-run and left the rest of the operations answering only 401. Far from the
    # sequence and from the boundary values, the run's own credential stays out of reach.
    ApiToken.objects.filter(id=issued.token.id).update(id=10**12 + secrets.randbelow(10**9))
    return issued.raw


def _run_schemathesis(port: int, token: str, report: Path) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(ROOT / "bench" / "schemathesis.toml"),
        "run",
        f"http://127.0.0.1:{port}/api/v1/openapi.json",
        "--header",
        f"Authorization: Bearer {token}",
        "--checks",
        "all",
        "--phases",
        PHASES,
        "--max-examples",
        str(EXAMPLES),
        "--exclude-path-regex",
        CONNECTING_OPERATIONS,
        "--request-timeout",
        "60",
        "--suppress-health-check",
        "all",
        "--report",
        "junit",
        "--report-junit-path",
        str(report),
        "--no-color",
    ]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)


def _junit_counts(report: Path) -> tuple[int, int, int]:
    """(test cases, failures, errors) from schemathesis's JUnit report: one case per operation and phase."""
    import xml.etree.ElementTree as ET

    root = ET.parse(report).getroot()  # noqa: S314 - our own tool's report
    suites = [root] if root.tag == "testsuite" else list(root)
    cases = sum(int(s.get("tests", 0)) for s in suites)
    failures = sum(int(s.get("failures", 0)) for s in suites)
    errors = sum(int(s.get("errors", 0)) for s in suites)
    return cases, failures, errors


def run() -> BenchResult:
    token = _admin_token()
    guard = str(ROOT / "bench" / "loopback_only")
    pythonpath = os.pathsep.join(filter(None, [guard, str(ROOT), os.environ.get("PYTHONPATH", "")]))
    with tempfile.TemporaryDirectory(prefix="perfpilot-fuzz-") as folder:
        report = Path(folder) / "junit.xml"
        with web_server(extra_env={"PYTHONPATH": pythonpath}) as port:
            outcome = _run_schemathesis(port, token, report)
        log = ROOT / "var" / "bench" / "fuzz.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(outcome.stdout + outcome.stderr)
        cases, failures, errors = _junit_counts(report) if report.exists() else (0, 0, 1)
    summary = [line for line in outcome.stdout.splitlines() if line.strip()][-12:]
    print("\n".join(summary))
    problems = failures + errors
    return BenchResult(
        name="fuzz",
        title="API fuzzing: schemathesis against a running server",
        setup=(
            f"`schemathesis run` (all checks; phases {PHASES}; {EXAMPLES} examples per operation) against "
            "gunicorn started as `make run` starts it, on the bench's embedded PostgreSQL and Redis, as an "
            "admin token. The stateful phase follows the OpenAPI links between operations (create a target, "
            "then read, change and delete it). Operations that connect to an address from the input are left "
            "out, and the server's Python refuses any connection off the machine. The full log is written to "
            "`var/bench/fuzz.log`."
        ),
        figures=(
            Figure("Operation x phase test cases run", str(cases)),
            Figure(
                f"Schemathesis failures ({EXAMPLES} examples per operation, stateful phase)",
                str(problems),
                target="0",
                passed=problems == 0 and outcome.returncode == 0,
            ),
        ),
        notes="```\n" + "\n".join(summary) + "\n```" if summary else "",
    )
