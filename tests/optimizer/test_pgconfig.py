"""The PostgreSQL config advisor: PgTune formulas, current vs recommended, OOM risk, ALTER SYSTEM."""

from __future__ import annotations

import psutil
import pytest

from optimizer.models import OptimizationRun, Recommendation
from optimizer.services.runs import recommendation_apply_start, run_create, run_execute
from optimizer.services.sessions import open_session
from optimizer.tuners.pgconfig import (
    CPU_SETTINGS,
    GB,
    MB,
    MEMORY_SETTINGS,
    ConfigAdvisor,
    _display,
    oom_risk_kb,
    pgtune,
)
from tests.optimizer.conftest import make_target


def test_pgtune_formulas_for_a_16gb_8_cpu_ssd_web_server():
    values = pgtune(ram_kb=16 * GB, cpus=8, storage="ssd", workload="web", connections=200)
    assert values["shared_buffers"] == 4 * GB
    assert values["effective_cache_size"] == 12 * GB
    assert values["maintenance_work_mem"] == 1 * GB
    assert values["wal_buffers"] == 16 * MB
    assert values["random_page_cost"] == 1.1 and values["effective_io_concurrency"] == 200
    assert values["max_parallel_workers_per_gather"] == 4 and values["max_worker_processes"] == 8
    assert values["work_mem"] == (16 * GB - 4 * GB) // (200 * 3) // 4
    assert oom_risk_kb({**values, "hash_mem_multiplier": 2.0}, connections=200) < 16 * GB


@pytest.mark.parametrize("server", ["pg18", "pg15"])
def test_advice_compares_current_and_recommended_and_marks_reload_or_restart(db, request, server):
    database = request.getfixturevalue(server)
    target = make_target(database)
    run = run_create(
        tuner="pgconfig",
        target=target,
        trigger="operator",
        actor=None,
        dry_run=False,
        params={"ram_mb": 64 * 1024, "cpus": 16, "storage": "ssd", "workload": "oltp"},
    )
    run = run_execute(run_id=run.id)
    assert run.status == OptimizationRun.Status.SUCCEEDED, run.error
    restart = Recommendation.objects.get(target=target, title__endswith="(needs restart)")
    settings = {row["name"]: row for row in restart.evidence["settings"]}
    assert settings["shared_buffers"]["recommended"] == "16GB"
    assert settings["shared_buffers"]["recommended_display"] == "16 GB"
    assert "current" in settings["shared_buffers"]
    assert "." not in settings["max_worker_processes"]["current_display"]  # integers are not shown as 8.0
    assert "ALTER SYSTEM SET \"shared_buffers\" = '16GB'" in restart.statements
    reload = Recommendation.objects.get(target=target, title__endswith="(needs reload)")
    assert reload.statements[-1] == "SELECT pg_reload_conf()"
    assert run.evidence_before["oom_risk_recommended_mb"] < 64 * 1024

    applied = run_execute(
        run_id=recommendation_apply_start(recommendation=reload, actor=None, trigger="api", dry_run=True).id
    )
    assert applied.status == "succeeded" and all(s["dry_run"] for s in applied.statements)


def test_an_oversubscribed_server_is_flagged_and_bad_parameters_are_refused(db, pg18):
    target = make_target(pg18)
    run = run_create(
        tuner="pgconfig", target=target, trigger="operator", actor=None, dry_run=False, params={"ram_mb": 64, "cpus": 1}
    )
    assert run_execute(run_id=run.id).status == "succeeded"
    assert Recommendation.objects.filter(target=target, title="Memory settings can exceed the host's RAM").exists()
    bad = run_create(
        tuner="pgconfig", target=target, trigger="operator", actor=None, dry_run=False, params={"storage": "tape"}
    )
    bad = run_execute(run_id=bad.id)
    assert bad.status == "failed" and "storage is one of ssd, hdd, san" in bad.error


def test_a_local_target_without_ram_and_cpus_says_it_assumed_this_machine(db, pg18):
    target = make_target(pg18)  # the embedded server listens on 127.0.0.1: it runs on this machine
    run = run_execute(
        run_id=run_create(tuner="pgconfig", target=target, trigger="operator", actor=None, dry_run=False, params={}).id
    )
    assert run.status == "succeeded", run.error
    assert run.evidence_before["ram_mb"] == psutil.virtual_memory().total // 1024 // 1024
    assert "of the machine Perfpilot runs on (the target is local: 127.0.0.1)" in run.evidence_before["hardware"]
    for advice in Recommendation.objects.filter(target=target, category="config"):
        assert advice.evidence["hardware"] == run.evidence_before["hardware"]  # shown on each recommendation
        assert "Assumes" not in advice.explanation  # the page shows the assumption once, above the advice


class RemoteConfigAdvisor(ConfigAdvisor):
    """The advisor on a server that reports a non-local address (as a PostgreSQL on another host does)."""

    def _server_address(self) -> str:
        return "192.0.2.10"


def test_a_remote_target_is_never_given_perfpilots_own_ram_or_cpus(db, pg18):
    target = make_target(pg18)
    with open_session(target=target, dry_run=True) as session:
        analysis = RemoteConfigAdvisor(session, params={}).analyze()
    advised = {row["name"] for finding in analysis.findings for row in finding.evidence.get("settings", [])}
    assert analysis.evidence["ram_mb"] is None and analysis.evidence["cpus"] is None
    assert (
        "RAM and CPU count unknown: the target (192.0.2.10) is not on Perfpilot's machine"
        in (analysis.evidence["hardware"])
    )
    assert not advised & (MEMORY_SETTINGS | CPU_SETTINGS)  # no shared_buffers from our 24 GB
    assert not any(f.key == "oom-risk" for f in analysis.findings)

    with open_session(target=target, dry_run=True) as session:
        given = RemoteConfigAdvisor(session, params={"ram_mb": 2048, "cpus": 2}).analyze()
    assert given.evidence["ram_mb"] == 2048 and given.evidence["hardware"] == (
        "Assumes 2 GiB RAM and 2 CPUs from the tuner's parameters"
    )


def test_settings_are_shown_as_people_read_them():
    assert _display("shared_buffers", 128 * MB, integer=True) == "128 MB"
    assert _display("shared_buffers", 6 * GB, integer=True) == "6 GB"
    assert _display("effective_cache_size", 18078 * MB, integer=True) == "17.7 GB"  # not "18078 MB"
    assert _display("work_mem", 1536, integer=True) == "1.5 MB"
    assert _display("max_parallel_workers", 8.0, integer=True) == "8"
    assert _display("random_page_cost", 1.1, integer=False) == "1.1"
    assert _display("random_page_cost", 4.0, integer=False) == "4"
    assert _display("autovacuum_vacuum_cost_limit", -1.0, integer=True) == "-1 (uses vacuum_cost_limit)"
    assert _display("log_min_duration_statement", -1.0, integer=True) == "-1 (off)"
    assert _display("autovacuum_work_mem", -1.0, integer=True) == "-1 (uses maintenance_work_mem)"
