"""Chaos: real workers SIGKILLed in the middle of a run, a real broker stopped, real concurrent
applies. Afterwards no run is left live, no lock is held by a dead owner, nothing answered 500,
and what the log says matches the target.

Bounded for `make test`; `make chaos` repeats them (PERFPILOT_CHAOS_REPEAT) and stops the broker
for longer (PERFPILOT_CHAOS_OUTAGE_SECONDS).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from contextlib import contextmanager

import pytest
from celery import current_app
from celery.app.routes import MapRoute
from django.db import connection
from psycopg import sql

from core.embedded import EmbeddedRedis
from core.errors import Conflict
from core.locks import lock_holder, lock_key
from core.supervisor import stop_process_group
from optimizer.models import OptimizationRun, Recommendation
from optimizer.services.liveness import runs_reap
from optimizer.services.runs import recommendation_apply_start, run_create, run_execute
from optimizer.tasks import execute_run_task
from tests.conftest import _spawn, _wait_for, free_port
from tests.optimizer.conftest import dead_tuples, make_dead_tuples, make_target, wait_for

pytestmark = [pytest.mark.chaos, pytest.mark.django_db(transaction=True)]

REPEAT = int(os.environ.get("PERFPILOT_CHAOS_REPEAT", "1"))
OUTAGE_SECONDS = float(os.environ.get("PERFPILOT_CHAOS_OUTAGE_SECONDS", "15"))
SCHEMA, TABLE = "chaos", "bloated"
API = "/api/v1/performance"


# --- a worker of our own ---------------------------------------------------------------------


def _chaos_worker(name: str, *, env: dict[str, str] | None = None):
    """A real `celery worker` on a queue of its own (concurrency 1), started like the session's."""
    queue = f"chaos-{name}-{time.time_ns()}"
    saved = {key: os.environ.get(key) for key in env or {}}
    os.environ.update(env or {})
    try:
        process, log = _spawn(
            ["worker", "--loglevel", "INFO", "--concurrency", "1", "--queues", queue,
             "--hostname", f"{queue}@%h", "--without-mingle", "--without-gossip"],
            f"{queue}.log",
        )  # fmt: skip
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    from core.heartbeat import worker_heartbeats

    if env is None:  # a worker on another broker writes its heartbeat there too: wait for its log line
        _wait_for(
            lambda: any(b.name.startswith(queue) for b in worker_heartbeats()),
            timeout=60,
            what="the chaos worker",
            process=process,
            log=log,
        )
    else:
        _wait_for(lambda: "ready." in log.read_text(), timeout=60, what="the chaos worker", process=process, log=log)
    return process, queue, log


def _sigkill(process) -> None:
    os.killpg(process.pid, signal.SIGKILL)  # the worker and its pool child, no goodbye
    process.wait(10)


def _backend_state(database, pid: int) -> str | None:
    row = database.scalar("SELECT coalesce(max(state), 'gone') FROM pg_stat_activity WHERE pid = %s", [pid])
    return None if row == "gone" else row


def _assert_nothing_live_and_no_dead_lock(target) -> None:
    assert not OptimizationRun.objects.filter(target=target, status__in=OptimizationRun.LIVE_STATUSES).exists()
    assert lock_holder(lock_key("optimize", target.id)) is None


# --- (a) SIGKILL during a VACUUM --------------------------------------------------------------


@pytest.mark.parametrize("attempt", range(REPEAT))
def test_a_worker_killed_during_a_vacuum_leaves_an_interrupted_run_and_a_cancelled_backend(attempt, pg15):
    make_dead_tuples(pg15, SCHEMA, TABLE, rows=3000, deleted=2000)
    target = make_target(pg15)
    worker, queue, _log = _chaos_worker("vacuum")
    try:
        with pg15.connect() as holder:
            # The VACUUM waits on this lock (for up to 2 minutes), so it is surely running when the worker dies.
            holder.execute("BEGIN")
            holder.execute(
                sql.SQL("LOCK TABLE {}.{} IN SHARE UPDATE EXCLUSIVE MODE").format(
                    sql.Identifier(SCHEMA), sql.Identifier(TABLE)
                )
            )
            params = {"min_dead_tuples": 100, "tables": [f"{SCHEMA}.{TABLE}"], "lock_timeout_seconds": 120}
            run = run_create(tuner="vacuum", target=target, trigger="api", actor=None, dry_run=False, params=params)
            execute_run_task.apply_async((run.id,), queue=queue)
            wait_for(
                lambda: (
                    (r := OptimizationRun.objects.get(pk=run.pk)).backend_pid
                    and _backend_state(pg15, r.backend_pid) == "active"
                    and any(s.get("in_progress") for s in r.statements)
                ),
                timeout=60,
                what="the VACUUM to run on the target",
            )
            _sigkill(worker)
            backend = OptimizationRun.objects.get(pk=run.pk).backend_pid
            assert _backend_state(pg15, backend) == "active"  # orphaned: still waiting to VACUUM

            result = runs_reap()
            holder.execute("ROLLBACK")
    finally:
        stop_process_group(worker)

    run.refresh_from_db()
    assert result.interrupted == [run.id]
    assert run.status == OptimizationRun.Status.INTERRUPTED
    assert run.finished_at is not None and run.evidence_before  # what was known is kept
    assert "Interrupted: the worker running it (pid" in run.error
    assert "Cancelled the statement 'VACUUM" in run.error
    assert run.statements[-1]["statement"].startswith("VACUUM") and run.statements[-1]["interrupted"]
    # The log says cancelled, and the target agrees: the backend stopped and the dead tuples are still there.
    assert _backend_state(pg15, backend) != "active"
    assert dead_tuples(pg15, SCHEMA, TABLE) >= 2000
    _assert_nothing_live_and_no_dead_lock(target)
    assert run.owner["task_id"] and run.heartbeat_at is not None

    # A new run on that target takes the lock and does the work.
    again = run_create(tuner="vacuum", target=target, trigger="api", actor=None, dry_run=False, params=params)
    again = run_execute(run_id=again.id)
    assert again.status == OptimizationRun.Status.SUCCEEDED, again.error
    wait_for(lambda: dead_tuples(pg15, SCHEMA, TABLE) == 0, what="the dead tuples vacuumed by the new run")


# --- (b) SIGKILL during an apply (CREATE INDEX CONCURRENTLY) ---------------------------------


def _slow_table(database, *, rows: int) -> None:
    """A table whose index build calls a 10 ms function per row: CREATE INDEX takes rows/100 s."""
    database.execute(
        "DROP TABLE IF EXISTS chaos_slow",
        "CREATE OR REPLACE FUNCTION chaos_slow(v int) RETURNS int IMMUTABLE LANGUAGE plpgsql "
        "AS $$ BEGIN PERFORM pg_sleep(0.01); RETURN v; END $$",
        "CREATE TABLE chaos_slow (id int PRIMARY KEY, v int)",
        f"INSERT INTO chaos_slow SELECT g, g FROM generate_series(1, {rows}) g",
    )


def _index_valid(database, name: str) -> bool | None:
    with database.connect() as conn:
        row = conn.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(%s)", [name]).fetchone()
    return None if row is None else row[0]


@pytest.mark.parametrize("attempt", range(REPEAT))
def test_a_worker_killed_during_an_apply_drops_the_invalid_index_and_reopens_the_recommendation(attempt, pg15):
    _slow_table(pg15, rows=3000)  # about 30 s of build: far longer than the test waits
    target = make_target(pg15)
    recommendation = Recommendation.objects.create(
        target=target,
        tuner="indexes",
        fingerprint=f"chaos-{time.time_ns()}",
        category="missing_index",
        title="Index chaos_slow",
        statement="CREATE INDEX CONCURRENTLY chaos_slow_idx ON chaos_slow (chaos_slow(v))",
        evidence={"index_name": "chaos_slow_idx", "schema": "public"},
    )
    worker, queue, _log = _chaos_worker("apply")
    try:
        with _maintenance_queue_moved_to(queue):
            run = recommendation_apply_start(recommendation=recommendation, actor=None, trigger="api")
        recommendation.refresh_from_db()
        assert recommendation.status == Recommendation.Status.APPLYING
        wait_for(
            lambda: (
                (r := OptimizationRun.objects.get(pk=run.pk)).backend_pid
                and _backend_state(pg15, r.backend_pid) == "active"
                and any(s.get("in_progress") for s in r.statements)
            ),
            timeout=60,
            what="the index build to run on the target",
        )
        time.sleep(1)  # well into the build
        _sigkill(worker)
        backend = OptimizationRun.objects.get(pk=run.pk).backend_pid
        assert _index_valid(pg15, "chaos_slow_idx") is False  # a build in progress is not valid yet
        result = runs_reap()
    finally:
        stop_process_group(worker)

    run.refresh_from_db()
    recommendation.refresh_from_db()
    assert result.interrupted == [run.id]
    assert run.status == OptimizationRun.Status.INTERRUPTED
    assert "Cancelled the statement 'CREATE INDEX CONCURRENTLY chaos_slow_idx" in run.error
    assert "Dropped the INVALID index chaos_slow_idx" in run.error
    # The target matches the log: no build running, no index left behind.
    assert _backend_state(pg15, backend) != "active"
    assert _index_valid(pg15, "chaos_slow_idx") is None
    # The recommendation is open again with the reason, so it can be retried.
    assert recommendation.status == Recommendation.Status.OPEN
    assert recommendation.apply_error == run.error
    _assert_nothing_live_and_no_dead_lock(target)


@contextmanager
def _maintenance_queue_moved_to(queue: str):
    """Send this block's optimizer tasks to `queue` (the chaos worker), not to the session's workers."""
    routes = current_app.amqp.routes
    saved = list(routes)
    tasks = ("optimizer.tasks.execute_run_task", "optimizer.tasks.explain_analyze_task")
    routes.insert(0, MapRoute({task: {"queue": queue} for task in tasks}))
    try:
        yield
    finally:
        routes[:] = saved


# --- (c) the broker stopped while work is queued --------------------------------------------


@contextmanager
def _broker_of_our_own():
    """A Redis server of our own as the test process's Celery broker (the session's Redis, which
    holds locks, heartbeats and the cache, stays up): stop it to take the broker away."""
    port = free_port()
    server = EmbeddedRedis(root=_tmp_dir(f"broker-{port}"), port=port, password="chaos-broker")
    server.start()
    url = f"redis://:chaos-broker@127.0.0.1:{port}/0"
    app = current_app
    saved = (app.conf.broker_url, app._pool, app.amqp._producer_pool)
    app.conf.broker_url = url
    app._pool = None
    app.amqp._producer_pool = None
    try:
        yield server, url
    finally:
        if app._pool is not None:
            app._pool.force_close_all()
        app.conf.broker_url, app._pool, app.amqp._producer_pool = saved
        server.stop()


def _tmp_dir(name: str):
    from tests.conftest import ARTIFACTS

    path = ARTIFACTS / "chaos" / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_with_the_broker_stopped_requests_answer_503_leave_nothing_pending_and_work_resumes(
    pg15, anonymous_client, operator_auth
):
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    target = make_target(pg15)
    recommendation = Recommendation.objects.create(
        target=target, tuner="indexes", fingerprint=f"c-{time.time_ns()}", category="invalid_index",
        title="Harmless", statement="SELECT 1",
    )  # fmt: skip
    every, _ = IntervalSchedule.objects.get_or_create(every=3600, period=IntervalSchedule.SECONDS)
    schedule = PeriodicTask.objects.create(
        name=f"chaos {time.time_ns()}", task="optimizer.tasks.measure_speedups_task", interval=every, queue="default"
    )
    with _broker_of_our_own() as (broker, url):
        worker, _queue, log = _chaos_worker("broker", env={"CELERY_BROKER_URL": url})
        try:
            body = {"tuners": ["vacuum"], "targets": [target.id], "dry_run": True}
            answers = []
            broker.stop()
            outage_ends = time.monotonic() + OUTAGE_SECONDS
            while time.monotonic() < outage_ends:
                for method, path, payload in (
                    ("post", f"{API}/optimization/execute", body),
                    ("post", f"/api/v1/schedules/{schedule.id}/run", None),
                    ("post", f"{API}/recommendations/{recommendation.id}/apply", None),
                ):
                    started = time.monotonic()
                    response = getattr(anonymous_client, method)(
                        path, payload, content_type="application/json", **operator_auth
                    )
                    answers.append((path, response.status_code, time.monotonic() - started, response.json()))
                time.sleep(2)
            broker.start()

            assert {status for _, status, _, _ in answers} == {503}, answers
            assert all("task queue is unavailable" in body["detail"] for *_, body in answers), answers
            assert max(seconds for _, _, seconds, _ in answers) < 10, answers  # bounded, never a hang
            # Nothing was left waiting for a task that never came.
            assert not OptimizationRun.objects.filter(status__in=OptimizationRun.LIVE_STATUSES).exists()
            assert set(OptimizationRun.objects.filter(target=target).values_list("status", flat=True)) == {"failed"}
            assert (
                "Not started: The task queue is unavailable" in OptimizationRun.objects.filter(target=target)[0].error
            )
            recommendation.refresh_from_db()
            assert recommendation.status == Recommendation.Status.OPEN

            # The broker is back: the same requests are queued and the worker does the work.
            with _maintenance_queue_moved_to(_queue):
                response = anonymous_client.post(
                    f"{API}/optimization/execute", body, content_type="application/json", **operator_auth
                )
            assert response.status_code == 202, response.content
            run_id = response.json()[0]["id"]
            wait_for(
                lambda: OptimizationRun.objects.get(pk=run_id).status == "succeeded",
                timeout=60,
                what="a run after the outage",
            )
            assert worker.poll() is None, log.read_text()[-3000:]
        finally:
            stop_process_group(worker)


# --- (d) two concurrent applies ---------------------------------------------------------------


def test_two_concurrent_applies_act_exactly_once_every_time(pg18):
    target = make_target(pg18)
    with _maintenance_queue_moved_to(f"chaos-nobody-{time.time_ns()}"):  # nobody runs them: the claim is the point
        _race(target)


def _race(target) -> None:
    for attempt in range(20 * REPEAT):
        recommendation = Recommendation.objects.create(
            target=target, tuner="indexes", fingerprint=f"race-{attempt}-{time.time_ns()}",
            category="invalid_index", title=f"Race {attempt}", statement="SELECT 1",
        )  # fmt: skip
        barrier = threading.Barrier(2)
        outcomes: list[object] = []

        def apply(recommendation=recommendation, barrier=barrier, outcomes=outcomes):
            try:
                barrier.wait(5)
                outcomes.append(recommendation_apply_start(recommendation=recommendation, actor=None, trigger="api"))
            except Conflict as exc:
                outcomes.append(exc)
            finally:
                connection.close()

        threads = [threading.Thread(target=apply) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        runs = [o for o in outcomes if isinstance(o, OptimizationRun)]
        conflicts = [o for o in outcomes if isinstance(o, Conflict)]
        assert len(runs) == 1 and len(conflicts) == 1, (attempt, outcomes)
        assert "already being applied (status applying)" in str(conflicts[0])
        assert OptimizationRun.objects.filter(recommendation=recommendation).count() == 1
        assert Recommendation.objects.get(pk=recommendation.pk).status == Recommendation.Status.APPLYING


# --- (e) SIGKILL during EXPLAIN ANALYZE ----------------------------------------------------------


@pytest.mark.parametrize("attempt", range(REPEAT))
def test_a_worker_killed_during_explain_analyze_leaves_an_interrupted_run_and_a_cancelled_backend(attempt, pg15):
    from optimizer.models import ExplainRun
    from optimizer.services.explain import explain_analyze_start

    target = make_target(pg15)
    worker, queue, _log = _chaos_worker("explain")
    try:
        with _maintenance_queue_moved_to(queue):
            run, _ = explain_analyze_start(target=target, query="SELECT pg_sleep(30)", actor=None, via="api")
        wait_for(
            lambda: (
                (r := ExplainRun.objects.get(pk=run.pk)).backend_pid and _backend_state(pg15, r.backend_pid) == "active"
            ),
            timeout=60,
            what="the EXPLAIN ANALYZE to run on the target",
        )
        _sigkill(worker)
        backend = ExplainRun.objects.get(pk=run.pk).backend_pid
        result = runs_reap()
    finally:
        stop_process_group(worker)
    run.refresh_from_db()
    assert result.explains_interrupted == [run.id] and run.status == "interrupted"
    assert "Asked the target to cancel its EXPLAIN" in run.error
    wait_for(lambda: _backend_state(pg15, backend) != "active", timeout=10, what="the orphaned EXPLAIN stopped")
    assert not ExplainRun.objects.filter(target=target, status__in=ExplainRun.LIVE_STATUSES).exists()
