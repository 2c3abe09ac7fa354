"""`python -m bench [NAME ...]`: run benchmarks on their own servers and record them in docs/benchmarks.md.

The benchmarks delete every sample and series in their database before loading their own, so
they run only on the embedded PostgreSQL of a data dir named "bench" (var/bench by default), never
on DATABASE_URL and never on the data of `make run` or `make test`.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import re
import sys
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
DOC_INTRO = """# Benchmarks

Measured by `make bench` (every benchmark) or `make bench BENCH_ARGS=query` (one). The harness
(`bench/`) starts its own embedded PostgreSQL and Redis under `var/bench` (ports 54379 and 63799),
so it never touches the data of `make run` or `make test`; it migrates, loads its data through the
same code paths as production (`monitoring.storage.samples_write`, `rollups_run`), measures with
`time.perf_counter`, and rewrites only its own section below (between its `bench:NAME` markers).

`make bench BENCH_ARGS="scale --quick"` runs a smaller, shorter scale benchmark (100 and 300
targets), and `--scale-sizes 100,1000 --scale-window 60` chooses its sizes and window.

Each section says when and on what machine it was measured, and sets each figure beside a
baseline measured in the same run, with the ratio. Figures are wall-clock times from a single
Python client on a warm cache; unit tests never assert timings.
"""


def _configure_environment() -> None:
    # Defaults for a direct `python -m bench`; the Makefile target sets the same values.
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings_test")
    os.environ.setdefault("PERFPILOT_VAR_DIR", str(ROOT / "var" / "bench"))
    os.environ.setdefault("PERFPILOT_EMBEDDED_PG_PORT", "54379")
    os.environ.setdefault("PERFPILOT_EMBEDDED_REDIS_PORT", "63799")
    # 30 days of raw samples are loaded; the default raw retention (7 days) would hide them.
    os.environ.setdefault("PERFPILOT_RETENTION_RAW_DAYS", "45")


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass  # not Linux: platform's answer stands
    return f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, {platform.system()}"


def _rows(result) -> list[tuple[str, ...]]:
    rows = [("Figure", "Measured", "Target", "Baseline (same run)", "Ratio", "Result")]
    for f in result.figures:
        verdict = "" if f.passed is None else ("pass" if f.passed else "FAIL")
        rows.append((f.name, f.value, f.target, f.baseline, f.ratio, verdict))
    return rows


def _table(result) -> list[str]:
    header, *body = _rows(result)
    return [f"| {' | '.join(header)} |", "|" + " --- |" * len(header)] + [f"| {' | '.join(row)} |" for row in body]


def _print(result) -> None:
    rows = _rows(result)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    print(f"\n== {result.name}: {result.title}")
    for index, row in enumerate(rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
        if index == 0:
            print("  ".join("-" * width for width in widths))


def _section(result, measured_at: datetime, server: str, load: float) -> str:
    lines = [
        f"<!-- bench:{result.name} -->",
        f"## `{result.name}`: {result.title}",
        "",
        f"Measured {measured_at:%Y-%m-%d %H:%M} UTC on {_machine()}; {server}; "
        f"1-minute load average {load:.2f} when it started (other work on the machine shows up here).",
        "",
        result.setup.strip(),
        "",
        *_table(result),
    ]
    if result.notes:
        lines += ["", result.notes.strip()]
    lines.append(f"<!-- /bench:{result.name} -->")
    return "\n".join(lines)


def _write_doc(section: str, name: str) -> None:
    text = DOC.read_text() if DOC.exists() else DOC_INTRO
    pattern = re.compile(rf"<!-- bench:{re.escape(name)} -->.*?<!-- /bench:{re.escape(name)} -->", re.DOTALL)
    if not pattern.search(text):  # first run of this benchmark: its section goes at the end
        text = text.rstrip("\n") + f"\n\n<!-- bench:{name} -->\n<!-- /bench:{name} -->\n"
    DOC.write_text(pattern.sub(lambda _: section, text))


def main(argv: list[str] | None = None) -> int:
    _configure_environment()
    import bench
    from bench import BENCHMARKS

    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"benchmarks to run: {', '.join(BENCHMARKS)} (all)")
    parser.add_argument("--no-doc", action="store_true", help="print only; leave docs/benchmarks.md alone")
    parser.add_argument("--quick", action="store_true", help="smaller, shorter runs of the benchmarks that offer one")
    parser.add_argument("--scale-sizes", metavar="N,N,...", help="target counts of the scale benchmark")
    parser.add_argument("--scale-window", type=float, metavar="SECONDS", help="measured window of each scale run")
    args = parser.parse_args(argv)
    try:
        sizes = tuple(int(n) for n in args.scale_sizes.split(",")) if args.scale_sizes else ()
    except ValueError:
        parser.error("--scale-sizes takes whole numbers separated by commas, e.g. 100,300")
    if any(n < 1 for n in sizes) or (args.scale_window is not None and args.scale_window < 10):
        parser.error("--scale-sizes must be positive and --scale-window at least 10 seconds")
    bench.options = bench.Options(quick=args.quick, scale_sizes=sizes, scale_window=args.scale_window)
    unknown = [name for name in args.names if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    names = args.names or list(BENCHMARKS)

    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    from core.embedded import embedded_servers_from_settings

    if not settings.USE_EMBEDDED_POSTGRES or settings.VAR_DIR.name != "bench":
        print(
            "The benchmarks delete all samples and series of their database: they run only on the "
            f"embedded PostgreSQL of a data dir named 'bench' (not {settings.VAR_DIR}, and without DATABASE_URL).",
            file=sys.stderr,
        )
        return 2
    started = [server for server in embedded_servers_from_settings() if server is not None and server.start()]
    try:
        call_command("migrate", verbosity=0)
        with connection.cursor() as cursor:
            cursor.execute("SHOW server_version")
            server = f"PostgreSQL {cursor.fetchone()[0]}"
        failed = False
        for name in names:
            module = importlib.import_module(BENCHMARKS[name])
            measured_at = datetime.now(UTC)
            load = os.getloadavg()[0]
            result = module.run()
            _print(result)
            failed |= any(figure.passed is False for figure in result.figures)
            if not args.no_doc:
                _write_doc(_section(result, measured_at, server, load), name)
                print(f"\nwrote the {name} section of {DOC.relative_to(ROOT)}")
        return 1 if failed else 0
    finally:
        connection.close()
        for server in reversed(started):
            server.stop()


if __name__ == "__main__":
    sys.exit(main())
