"""PostgreSQL configuration advisor: PgTune-style values from RAM, CPUs, storage and workload type.

The host's RAM and CPU count come from the parameters (ram_mb, cpus) or, when not given, from the
machine Perfpilot runs on (said so in the advice). Current and recommended values are compared
side by side; the out-of-memory risk sum (shared_buffers + connections x work_mem x hash_mem_multiplier
+ autovacuum workers x maintenance memory + wal_buffers) is checked against RAM for both. Changes are
ALTER SYSTEM statements, grouped by what they need: a reload, or a restart (pg_settings.context).
"""

from __future__ import annotations

import math
from typing import Any

import psutil
from psycopg import sql

from optimizer.tuners.base import Analysis, Finding, Tuner, TunerError, TunerSchedule, register

KB, MB, GB = 1, 1024, 1024 * 1024  # in kB, PostgreSQL's memory unit
WORKLOADS = ("web", "oltp", "dw", "desktop", "mixed")
STORAGES = ("ssd", "hdd", "san")
WAL_SIZES = {"web": (1 * GB, 4 * GB), "oltp": (2 * GB, 8 * GB), "dw": (4 * GB, 16 * GB), "desktop": (100 * MB, 2 * GB)}
_UNIT_KB = {"B": 1 / 1024, "kB": 1, "8kB": 8, "16kB": 16, "32kB": 32, "MB": 1024, "GB": 1024 * 1024}
MEMORY_SETTINGS = {"shared_buffers", "effective_cache_size", "work_mem", "maintenance_work_mem", "wal_buffers"}


def _format_kb(kb: float) -> str:
    kb = int(kb)
    if kb >= GB and kb % GB == 0:
        return f"{kb // GB}GB"
    if kb >= MB:
        return f"{kb // MB}MB"
    return f"{kb}kB"


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
            current[name] = {"value": value, "context": context, "unit": unit, "pending_restart": pending}
        return current

    def analyze(self) -> Analysis:
        storage, workload = self.params["storage"], self.params["workload"]
        if storage not in STORAGES:
            raise TunerError(f"storage is one of {', '.join(STORAGES)}.", field="storage")
        if workload not in WORKLOADS:
            raise TunerError(f"workload is one of {', '.join(WORKLOADS)}.", field="workload")
        notes = []
        ram_kb = int(self.params["ram_mb"] * MB)
        cpus = int(self.params["cpus"])
        if not ram_kb or not cpus:
            ram_kb = ram_kb or psutil.virtual_memory().total // 1024
            cpus = cpus or psutil.cpu_count() or 1
            notes.append("RAM/CPUs not given: assumed those of the machine Perfpilot runs on (set ram_mb and cpus)")
        current = self._current(
            [
                *pgtune(ram_kb=ram_kb, cpus=max(cpus, 4), storage=storage, workload=workload, connections=100),
                "max_connections",
                "hash_mem_multiplier",
                "autovacuum_work_mem",
            ]
        )
        connections = int(current["max_connections"]["value"])
        recommended = pgtune(ram_kb=ram_kb, cpus=cpus, storage=storage, workload=workload, connections=connections)
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
                    "needs": "restart" if current[name]["context"] == "postmaster" else "reload",
                    "differs": differs,
                }
            )
        current_values = {n: c["value"] for n, c in current.items() if isinstance(c["value"], float)}
        risk_now = oom_risk_kb(current_values, connections=connections)
        risk_new = oom_risk_kb({**current_values, **recommended}, connections=connections)
        evidence = {
            "ram_mb": ram_kb // MB,
            "cpus": cpus,
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
        if risk_now > ram_kb:
            analysis.findings.append(
                Finding(
                    key="oom-risk",
                    category="config",
                    title="Memory settings can exceed the host's RAM",
                    explanation=(
                        f"shared_buffers + {connections} connections x work_mem x hash_mem_multiplier + autovacuum "
                        f"workers x maintenance memory reach {risk_now / MB:.0f} MB of {ram_kb / MB:.0f} MB RAM: "
                        "a busy moment can end in the out-of-memory killer. Lower work_mem or max_connections "
                        "(or pool connections)."
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
                f"For {evidence['ram_mb']} MB RAM, {evidence['cpus']} CPUs, {evidence['storage']} storage and a "
                f"{evidence['workload']} workload: {names}. "
                + ("Applied with a configuration reload." if needs == "reload" else "Takes effect after a restart.")
            ),
            statements=statements,
            estimated_impact="better use of memory, I/O and CPUs",
            effort="low" if needs == "reload" else "medium",
            priority=50 if needs == "reload" else 40,
            evidence={**evidence, "settings": changes, "needs": needs},
        )
