"""The PostgreSQL config advisor: PgTune formulas, current vs recommended, OOM risk, ALTER SYSTEM."""

from __future__ import annotations

import pytest

from optimizer.models import OptimizationRun, Recommendation
from optimizer.services.runs import recommendation_apply_start, run_create, run_execute
from optimizer.tuners.pgconfig import GB, MB, oom_risk_kb, pgtune
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
    assert "current" in settings["shared_buffers"]
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
