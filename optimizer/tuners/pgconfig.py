"""PostgreSQL configuration advisor: PgTune-style values from RAM, CPUs, storage and workload type.

The host's RAM and CPU count come from the parameters (ram_mb, cpus). When they are not given, the
machine Perfpilot runs on is assumed only if the target runs on it too (PostgreSQL reports a loopback
or Unix-socket server address); for a remote target the settings that depend on the unknown figure are
not advised at all. Every finding states where its RAM and CPU figures came from. Current and
recommended values are compared side by side; the out-of-memory risk sum (shared_buffers + connections x
work_mem x hash_mem_multiplier + autovacuum workers x maintenance memory + wal_buffers) is checked against
RAM for both. Changes are
ALTER SYSTEM statements, grouped by what they need: a reload, or a restart (pg_settings.context).
"""

from __future__ import annotations

import math
from typing import Any

import psutil
from psycopg import sql

from core import humanize
from optimizer.tuners.base import Analysis, Finding, Tuner, TunerError, TunerSchedule, register

KB, MB, GB = 1, 1024, 1024 * 1024  # in kB, PostgreSQL's memory unit
WORKLOADS = ("web", "oltp", "dw", "desktop", "mixed")
STORAGES = ("ssd", "hdd", "san")
WAL_SIZES = {"web": (1 * GB, 4 * GB), "oltp": (2 * GB, 8 * GB), "dw": (4 * GB, 16 * GB), "desktop": (100 * MB, 2 * GB)}
_UNIT_KB = {"B": 1 / 1024, "kB": 1, "8kB": 8, "16kB": 16, "32kB": 32, "MB": 1024, "GB": 1024 * 1024}
MEMORY_SETTINGS = {"shared_buffers", "effective_cache_size", "work_mem", "maintenance_work_mem", "wal_buffers"}
# Settings derived from the CPU count (work_mem too: it is divided by the parallel workers per gather).
CPU_SETTINGS = {
    "work_mem",
    "autovacuum_max_workers",
    "max_worker_processes",
    "max_parallel_workers",
    "max_parallel_workers_per_gather",
    "max_parallel_maintenance_workers",
}
LOOPBACK_ADDRESSES = {None, "127.0.0.1", "::1"}  # None: a Unix socket, so the same machine


def _format_kb(kb: float) -> str:
    kb = int(kb)
    if kb >= GB and kb % GB == 0:
        return f"{kb // GB}GB"
    if kb >= MB:
        return f"{kb // MB}MB"
    return f"{kb}kB"


def _human_kb(kb: float) -> str:
    """kB in PostgreSQL's own units (1 GB = 1024 MB), to one decimal: 18078 MB reads "17.7 GB"."""
    for unit, size in (("GB", GB), ("MB", MB)):
        if kb >= size:
            return f"{kb / size:.1f}".removesuffix(".0") + f" {unit}"
    return f"{int(kb)} kB"


def _display(name: str, value: Any, *, integer: bool) -> str:
    """A setting as a person reads it: "6 GB", "128 MB", "200", "1.1", "-1 (off)"; PostgreSQL literals stay in SQL."""
    if isinstance(value, str):
        return value
    if value == -1:  # autovacuum's -1 falls back to the plain setting; elsewhere it switches the feature off
        if name == "autovacuum_work_mem":
            return "-1 (uses maintenance_work_mem)"
        if name.startswith("autovacuum_vacuum_cost_"):
            return f"-1 (uses {name.removeprefix('autovacuum_')})"
        return "-1 (off)"
    if name in MEMORY_SETTINGS or name.endswith("wal_size"):
        return _human_kb(value)
    if integer or float(value).is_integer():
        return str(int(value))
    return f"{value:g}"


def pgtune(*, ram_kb: int, cpus: int, storage: str, workload: str, connections: int) -> dict[str, Any]:
    """The recommended settings (memory in kB, others as PostgreSQL takes them)."""
    shared = ram_kb // 16 if workload == "desktop" else ram_kb // 4
    cache = ram_kb // 4 if workload == "desktop" else ram_kb * 3 // 4
    maintenance = min(ram_kb // 8 if workload == "dw" else ram_kb // 16, 2 * GB)
    wal_buffers = min(max(shared * 3 // 100, 32 * KB), 16 * MB)
    per_gather = min(4, math.ceil(cpus / 2)) if cpus >= 4 else 2
    divisor = {"web": 1, "oltp": 1, "dw": 2, "desktop": 6, "mixed": 2}[workload]
    work_mem = max(64 * KB, (ram_kb - shared) // (connections * 3) // max(1, per_gather) // divisor)
    min_wal, max_wal = WAL_SIZES.get(workload, (1 * GB, 4 * GB))
    values: dict[str, Any] = {
        "shared_buffers": shared,
        "effective_cache_size": cache,
        "maintenance_work_mem": maintenance,
        "work_mem": work_mem,
        "wal_buffers": wal_buffers,
        "min_wal_size": min_wal,
        "max_wal_size": max_wal,
        "checkpoint_completion_target": 0.9,
        "default_statistics_target": 500 if workload == "dw" else 100,
        "random_page_cost": 4.0 if storage == "hdd" else 1.1,
        "effective_io_concurrency": {"ssd": 200, "hdd": 2, "san": 300}[storage],
        "autovacuum_max_workers": max(3, min(6, cpus // 2)),
        "autovacuum_vacuum_cost_limit": 2000 if storage != "hdd" else 400,
    }
    if cpus >= 4:
        values.update(
            max_worker_processes=cpus,
            max_parallel_workers=cpus,
            max_parallel_workers_per_gather=per_gather,
            max_parallel_maintenance_workers=min(4, math.ceil(cpus / 2)),
        )
    return values


def oom_risk_kb(values: dict[str, float], *, connections: int) -> float:
    """Worst-case memory: every connection sorting/hashing at once, every autovacuum worker busy."""
    autovacuum_mem = values.get("autovacuum_work_mem", -1)
    if autovacuum_mem is None or autovacuum_mem <= 0:
        autovacuum_mem = values["maintenance_work_mem"]
    return (
        values["shared_buffers"]
        + connections * values["work_mem"] * values.get("hash_mem_multiplier", 2.0)
        + values.get("autovacuum_max_workers", 3) * autovacuum_mem
        + values.get("wal_buffers", 0)
    )


@register
class ConfigAdvisor(Tuner):
    kind = "pgconfig"
    label = "PostgreSQL config advisor"
    description = "PgTune-style settings from RAM, CPUs, storage and workload; ALTER SYSTEM, reload or restart."
    # Weekly on Sunday at 04:10: PostgreSQL configuration advice (read-only; applying is an operator's click).
    schedule = TunerSchedule(
        name="Optimizer: PostgreSQL config advice",
        crontab="10 4 * * 0",
        description="PgTune-style settings compared with the current ones; ALTER SYSTEM marked reload/restart.",
    )
    defaults = {"ram_mb": 0, "cpus": 0, "storage": "ssd", "workload": "web", "tolerance_percent": 10.0}

    def _current(self, names: list[str]) -> dict[str, dict[str, Any]]:
        rows = self.session.query(
            "SELECT name, setting, unit, context, vartype, pending_restart FROM pg_settings WHERE name = ANY(%s)",
            [names],
        )
        current = {}
        for name, setting, unit, context, vartype, pending in rows:
            if vartype in ("integer", "real"):
                value = float(setting)
                if unit in _UNIT_KB and value >= 0:
                    value *= _UNIT_KB[unit]
            else:
                value = setting
            current[name] = {
                "value": value,
                "context": context,
                "unit": unit,
                "pending_restart": pending,
                "integer": vartype == "integer",
            }
        return current

    def _server_address(self) -> str | None:
        """The address the target's server answered on, as it reports it; None for a Unix socket."""
        return self.session.query("SELECT host(inet_server_addr())")[0][0]

    def _hardware(self) -> tuple[int | None, int | None, str]:
        """The target's RAM (kB) and CPUs, None when unknown, and a sentence saying where they came from.

        Perfpilot's own machine stands in only for a target PostgreSQL says is on it (a loopback or
        Unix-socket server address): a remote server's memory is not ours.
        """
        ram_kb = int(self.params["ram_mb"] * MB) or None
        cpus = int(self.params["cpus"]) or None
        given = []
        if ram_kb:
            given.append(f"{humanize.size(ram_kb * 1024)} RAM")
        if cpus:
            given.append(f"{cpus} CPUs")
        source = f"{' and '.join(given)} from the tuner's parameters" if given else ""
        if ram_kb and cpus:
            return ram_kb, cpus, f"Assumes {source}"
        address = self._server_address()
        if address in LOOPBACK_ADDRESSES:
            assumed = []
            if not ram_kb:
                ram_kb = psutil.virtual_memory().total // 1024
                assumed.append(f"{humanize.size(ram_kb * 1024)} RAM")
            if not cpus:
                cpus = psutil.cpu_count() or 1
                assumed.append(f"{cpus} CPUs")
            where = "socket" if address is None else address
            text = f"{' and '.join(assumed)} of the machine Perfpilot runs on (the target is local: {where})"
            return ram_kb, cpus, "Assumes " + "; ".join(filter(None, [source, text]))
        missing = " and ".join(n for n, v in (("RAM", ram_kb), ("CPU count", cpus)) if not v)
        text = f"{missing} unknown: the target ({address}) is not on Perfpilot's machine; set ram_mb and cpus"
        return ram_kb, cpus, "; ".join(filter(None, [f"Assumes {source}" if source else "", text]))

    def analyze(self) -> Analysis:
        storage, workload = self.params["storage"], self.params["workload"]
        if storage not in STORAGES:
            raise TunerError(f"storage is one of {', '.join(STORAGES)}.", field="storage")
        if workload not in WORKLOADS:
            raise TunerError(f"workload is one of {', '.join(WORKLOADS)}.", field="workload")
        notes = []
        ram_kb, cpus, hardware = self._hardware()
        ram_known, cpus_known = ram_kb is not None, cpus is not None
        unknown = (set() if ram_known else MEMORY_SETTINGS) | (set() if cpus_known else CPU_SETTINGS)
        if ram_kb is None or cpus is None:
            notes.append(f"{hardware}: the settings that depend on it are not advised")
        ram_kb, cpus = ram_kb or 16 * GB, cpus or 4  # placeholders: what they shape is left out below
        current = self._current(
            [
                *pgtune(ram_kb=ram_kb, cpus=max(cpus, 4), storage=storage, workload=workload, connections=100),
                "max_connections",
                "hash_mem_multiplier",
                "autovacuum_work_mem",
            ]
        )
        connections = int(current["max_connections"]["value"])
        recommended = {
            name: value
            for name, value in pgtune(
                ram_kb=ram_kb, cpus=cpus, storage=storage, workload=workload, connections=connections
            ).items()
            if name not in unknown
        }
        rows = []
        for name, value in recommended.items():
            if name not in current:
                continue
            now = current[name]["value"]
            tolerance = self.params["tolerance_percent"] / 100 * max(abs(float(value)), 1e-9)
            # A change already made with ALTER SYSTEM that waits for a restart is not advised again.
            differs = abs(float(now) - float(value)) > tolerance and not current[name]["pending_restart"]
            rows.append(
                {
                    "name": name,
                    "current": _format_kb(now) if name in MEMORY_SETTINGS or name.endswith("wal_size") else now,
                    "recommended": _format_kb(value) if name in MEMORY_SETTINGS or name.endswith("wal_size") else value,
                    "current_display": _display(name, now, integer=current[name]["integer"]),
                    "recommended_display": _display(name, value, integer=current[name]["integer"]),
                    "needs": "restart" if current[name]["context"] == "postmaster" else "reload",
                    "differs": differs,
                }
            )
        current_values = {n: c["value"] for n, c in current.items() if isinstance(c["value"], float)}
        risk_now = oom_risk_kb(current_values, connections=connections)
        risk_new = oom_risk_kb({**current_values, **recommended}, connections=connections)
        evidence = {
            "ram_mb": ram_kb // MB if ram_known else None,
            "cpus": cpus if cpus_known else None,
            "hardware": hardware,
            "storage": storage,
            "workload": workload,
            "max_connections": connections,
            "settings": rows,
            "oom_risk_current_mb": round(risk_now / MB),
            "oom_risk_recommended_mb": round(risk_new / MB),
        }
        analysis = Analysis(evidence={k: v for k, v in evidence.items() if k != "settings"}, notes=notes)
        for needs in ("reload", "restart"):
            changes = [r for r in rows if r["differs"] and r["needs"] == needs]
            if changes:
                analysis.findings.append(self._finding(needs, changes, evidence))
        if evidence["ram_mb"] is not None and risk_now > ram_kb:
            analysis.findings.append(
                Finding(
                    key="oom-risk",
                    category="config",
                    title="Memory settings can exceed the host's RAM",
                    explanation=(
                        f"shared_buffers + {connections} connections x work_mem x hash_mem_multiplier + autovacuum "
                        f"workers x maintenance memory reach {risk_now / MB:.0f} MB of {ram_kb / MB:.0f} MB RAM: "
                        "a busy moment can end in the out-of-memory killer. Lower work_mem or max_connections "
                        f"(or pool connections). {hardware}."
                    ),
                    estimated_impact="avoids out-of-memory crashes",
                    priority=85,
                    evidence=evidence,
                )
            )
        return analysis

    def _finding(self, needs: str, changes: list[dict], evidence: dict) -> Finding:
        statements = [
            self.session.render(
                sql.SQL("ALTER SYSTEM SET {} = {}").format(
                    sql.Identifier(r["name"]), sql.Literal(str(r["recommended"]))
                )
            )
            for r in changes
        ]
        if needs == "reload":
            statements.append("SELECT pg_reload_conf()")
        names = ", ".join(r["name"] for r in changes)
        return Finding(
            key=f"config:{needs}:{names}",
            category="config",
            title=f"Tune {len(changes)} setting(s) (needs {needs})",
            explanation=(
                # The hardware assumption is evidence["hardware"], shown above the advice on its own.
                f"For {evidence['storage']} storage and a {evidence['workload']} workload: {names}. "
                + ("Applied with a configuration reload." if needs == "reload" else "Takes effect after a restart.")
            ),
            statements=statements,
            estimated_impact="better use of memory, I/O and CPUs",
            effort="low" if needs == "reload" else "medium",
            priority=50 if needs == "reload" else 40,
            evidence={**evidence, "settings": changes, "needs": needs},
        )
