"""Live progress of a long action, read from pg_stat_progress_create_index while it runs."""

from __future__ import annotations

import threading

from django.db import connection

from optimizer.models import OptimizationRun, Recommendation
from optimizer.selectors import run_progress
from optimizer.services.runs import run_create, run_execute
from tests.optimizer.conftest import make_target, wait_for


def test_a_running_concurrent_index_build_reports_its_phase(transactional_db, operator_client, pg18):
    with pg18.connect() as conn:
        conn.execute("DROP TABLE IF EXISTS progress_t")
        conn.execute("CREATE TABLE progress_t (id int PRIMARY KEY, a int)")
        conn.execute("INSERT INTO progress_t SELECT g, g FROM generate_series(1, 1000) g")
    target = make_target(pg18)
    recommendation = Recommendation.objects.create(
        target=target,
        tuner="indexes",
        fingerprint="progress",
        category="missing_index",
        title="Create index on public.progress_t (a)",
        statement='CREATE INDEX CONCURRENTLY "pp_progress_t_a_idx" ON "public"."progress_t" ("a")',
        evidence={"index_name": "pp_progress_t_a_idx", "schema": "public"},
    )
    run = run_create(
        tuner="indexes",
        target=target,
        trigger="operator",
        actor=None,
        dry_run=False,
        action="apply",
        recommendation=recommendation,
        params={"lock_timeout_seconds": 60},
    )
    with pg18.connect() as writer:
        writer.execute("BEGIN")
        writer.execute("INSERT INTO progress_t VALUES (0, 0)")  # the build waits for this writer

        def apply():
            try:
                run_execute(run_id=run.id)
            finally:
                connection.close()

        thread = threading.Thread(target=apply)
        thread.start()
        wait_for(lambda: OptimizationRun.objects.get(pk=run.id).backend_pid is not None, what="the build to start")

        def progress():
            return run_progress(run=OptimizationRun.objects.select_related("target").get(pk=run.id))

        wait_for(lambda: progress() is not None, what="progress of the build")
        assert progress().command == "index"
        assert progress().phase.startswith("waiting for writers")
        page = operator_client.get(f"/optimizer/runs/{run.id}/?fragment=status", HTTP_HX_REQUEST="true")
        assert page.status_code == 200 and 'data-testid="progress"' in page.content.decode()
        writer.execute("COMMIT")
        thread.join(60)
    run.refresh_from_db()
    assert run.status == OptimizationRun.Status.SUCCEEDED, run.error
    assert run_progress(run=run) is None


def test_a_crawling_vacuum_shows_its_progress_and_is_stopped_by_the_action_timeout(transactional_db, pg18):
    from tests.optimizer.conftest import make_dead_tuples

    make_dead_tuples(pg18, "public", "crawl_t", rows=50000, deleted=40000)
    # The target's URL options make every page cost a sleep, so the VACUUM crawls.
    slow = type(pg18)(pg18.name, f"{pg18.url}?options=-c%20vacuum_cost_delay%3D20%20-c%20vacuum_cost_limit%3D1", 0)
    target = make_target(slow)
    run = run_create(
        tuner="vacuum",
        target=target,
        trigger="operator",
        actor=None,
        dry_run=False,
        params={"min_dead_tuples": 100, "tables": ["public.crawl_t"], "action_timeout_seconds": 4},
    )
    seen = []

    def execute():
        try:
            run_execute(run_id=run.id)
        finally:
            connection.close()

    thread = threading.Thread(target=execute)
    thread.start()

    def vacuum_progress():
        current = OptimizationRun.objects.select_related("target").get(pk=run.id)
        progress = run_progress(run=current)
        if progress is not None:
            seen.append(progress)
        return bool(seen)

    wait_for(vacuum_progress, what="the VACUUM's progress")
    thread.join(60)
    assert seen[0].command == "vacuum" and seen[0].phase
    run.refresh_from_db()
    assert run.status == OptimizationRun.Status.FAILED
    assert "statement_timeout (4 s)" in run.error
