"""`faults_runs`: after each fault, seconds until every run is terminal and the API works normally again.

Real processes on the bench's servers: gunicorn (as `make run` starts it), a Celery worker on the
default and maintenance queues, and beat with the default schedules (so the reaper runs every 30 s,
as in production). The target is a database of its own on this machine's PostgreSQL 15.

1. Worker SIGKILLed during a VACUUM (held on a table lock, so it is surely running): a new worker is
   started at once, as the supervisor of `make run` does. Measured from the kill: the run terminal
   ("interrupted", its VACUUM cancelled on the target), and a new run on that target succeeded.
2. Worker SIGKILLed during an apply (CREATE INDEX CONCURRENTLY over a slow expression): same, plus
   the recommendation open again and the invalid index dropped.
3. Redis (broker and locks) stopped for OUTAGE_SECONDS while runs are requested every 2 s through the
   API: every answer is counted (503 expected, never 500) with the slowest; measured from Redis' restart:
   an execute answered 202 and its run succeeded, and no run left live.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import time

import psycopg
from psycopg import sql

from bench import BenchResult, Figure
from bench.servers import celery_spawn, web_server
from core.env import envint
from core.supervisor import stop_process_group

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DATABASE = "bench_faults_runs"
URL = f"postgresql://postgres@127.0.0.1:5432/{DATABASE}"
OUTAGE_SECONDS = envint("PERFPILOT_BENCH_FAULTS_OUTAGE_SECONDS", 30, minimum=5)
AIM_SECONDS = 60


def _db(*statements: str) -> None:
    with psycopg.connect(URL, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def _setup() -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DATABASE)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
    _db(
        "CREATE TABLE bloated (id int PRIMARY KEY, payload text) WITH (autovacuum_enabled = off)",
        "INSERT INTO bloated SELECT g, md5(g::text) FROM generate_series(1, 20000) g",
        "ANALYZE bloated",
        "DELETE FROM bloated WHERE id <= 15000",
        "CREATE FUNCTION slow(v int) RETURNS int IMMUTABLE LANGUAGE plpgsql "
        "AS $$ BEGIN PERFORM pg_sleep(0.01); RETURN v; END $$",
        "CREATE TABLE slow_t (id int PRIMARY KEY, v int)",
        "INSERT INTO slow_t SELECT g, g FROM generate_series(1, 6000) g",
    )


def _teardown() -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DATABASE)))


class Api:
    def __init__(self, port: int, token: str) -> None:
        self.port, self.token = port, token

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict | list | None, float]:
        started = time.monotonic()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        try:
            conn.request(method, path, json.dumps(body) if body is not None else None, headers)
            response = conn.getresponse()
            raw = response.read()
            status = response.status
        except OSError:
            return 0, None, time.monotonic() - started
        finally:
            conn.close()
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        return status, data, time.monotonic() - started


def _until(predicate, timeout: float) -> float | None:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.25)
    return None


def _worker(n: int):
    return celery_spawn(
        ["worker", "--loglevel", "INFO", "--concurrency", "2", "--queues", "default,maintenance",
         "--hostname", f"bench-faults-{n}-{time.time_ns()}@%h", "--without-mingle", "--without-gossip"],
        f"faults-worker-{n}.log",
    )  # fmt: skip


def _run(run_id: int):
    from optimizer.models import OptimizationRun

    return OptimizationRun.objects.get(pk=run_id)


def _active(pid: int | None) -> bool:
    if pid is None:
        return False
    with psycopg.connect(URL, autocommit=True) as conn:
        row = conn.execute("SELECT state FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone()
    return bool(row and row[0] == "active")


def _kill_during(api: Api, worker, start_run, *, n: int):
    """Start a run, SIGKILL the worker once its statement runs, restart a worker; returns the new
    worker, the run id and the times (s after the kill) to the run terminal and to a new run succeeding."""
    run_id = start_run()
    assert _until(lambda: _active(_run(run_id).backend_pid), 120) is not None, "the statement never started"
    time.sleep(1)
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait(10)
    killed = time.monotonic()
    worker = _worker(n)
    terminal = _until(lambda: not _run(run_id).is_live, 180)
    terminal_s = None if terminal is None else time.monotonic() - killed
    return worker, run_id, terminal_s, killed


def _new_run_ok(api: Api, target_id: int, killed: float) -> float | None:
    status, runs, _ = api.call(
        "POST", "/api/v1/performance/optimization/execute", {"tuners": ["vacuum"], "targets": [target_id]}
    )
    if status != 202:
        return None
    run_id = runs[0]["id"]
    done = _until(lambda: _run(run_id).status == "succeeded", 180)
    return None if done is None else time.monotonic() - killed


def run() -> BenchResult:
    from django.contrib.auth import get_user_model

    from core.embedded import embedded_servers_from_settings
    from core.roles import OPERATOR, user_set_role
    from core.services import api_token_create, schedule_sync_defaults
    from monitoring.models import Target
    from monitoring.services.targets import TargetInput, target_create
    from optimizer.models import OptimizationRun, Recommendation

    Target.objects.filter(name="bench-faults").delete()
    OptimizationRun.objects.filter(status__in=OptimizationRun.LIVE_STATUSES).delete()
    _setup()
    schedule_sync_defaults()
    user, _ = get_user_model().objects.get_or_create(username="bench-faults")
    user_set_role(user=user, role=OPERATOR)
    token = api_token_create(user=user, name="bench-faults", via="command").raw
    target = target_create(
        data=TargetInput(name="bench-faults", kind="postgres", url=URL, interval_seconds=60, timeout_seconds=10),
        actor=None,
        via="system",
    )
    figures = []
    worker = _worker(0)
    beat = celery_spawn(["beat", "--loglevel", "INFO", "--pidfile="], "faults-beat.log")
    try:
        with web_server() as port:
            api = Api(port, token)
            time.sleep(5)  # the worker and beat up
            # 1. VACUUM
            with psycopg.connect(URL, autocommit=True) as holder:
                holder.execute("BEGIN")
                holder.execute("LOCK TABLE bloated IN SHARE UPDATE EXCLUSIVE MODE")

                def vacuum() -> int:
                    body = {
                        "tuners": ["vacuum"],
                        "targets": [target.id],
                        "params": {"min_dead_tuples": 100, "tables": ["public.bloated"], "lock_timeout_seconds": 600},
                    }
                    status, runs, _ = api.call("POST", "/api/v1/performance/optimization/execute", body)
                    assert status == 202, runs
                    return runs[0]["id"]

                worker, vacuum_id, vacuum_terminal, killed = _kill_during(api, worker, vacuum, n=1)
                holder.execute("ROLLBACK")
            vacuum_new = _new_run_ok(api, target.id, killed)
            vacuum_run = _run(vacuum_id)
            # 2. CREATE INDEX CONCURRENTLY
            recommendation = Recommendation.objects.create(
                target=target, tuner="indexes", fingerprint=f"bench-faults-{time.time_ns()}",
                category="missing_index", title="slow index",
                statement="CREATE INDEX CONCURRENTLY slow_idx ON slow_t (slow(v))",
                evidence={"index_name": "slow_idx", "schema": "public"},
            )  # fmt: skip

            def apply() -> int:
                status, run, _ = api.call("POST", f"/api/v1/performance/recommendations/{recommendation.id}/apply")
                assert status == 202, run
                return run["id"]

            worker, apply_id, apply_terminal, killed = _kill_during(api, worker, apply, n=2)
            apply_new = _new_run_ok(api, target.id, killed)
            apply_run = _run(apply_id)
            recommendation.refresh_from_db()
            # 3. Redis stopped
            redis_server = [s for s in embedded_servers_from_settings() if s is not None][-1]
            redis_server.stop()
            answers = []
            ends = time.monotonic() + OUTAGE_SECONDS
            body = {"tuners": ["vacuum"], "targets": [target.id], "dry_run": True}
            while time.monotonic() < ends:
                answers.append(api.call("POST", "/api/v1/performance/optimization/execute", body)[::2])
                time.sleep(2)
            redis_server.start()
            back = time.monotonic()
            if worker.poll() is not None:  # as the supervisor of `make run` would
                worker = _worker(3)
            redis_ok = None
            status, runs, _ = 0, None, 0.0
            while time.monotonic() - back < 180:
                status, runs, _ = api.call("POST", "/api/v1/performance/optimization/execute", body)
                if status == 202:
                    break
                time.sleep(1)
            if status == 202 and _until(lambda: _run(runs[0]["id"]).status == "succeeded", 180) is not None:
                redis_ok = time.monotonic() - back
            live_left = OptimizationRun.objects.filter(status__in=OptimizationRun.LIVE_STATUSES).count()
    finally:
        stop_process_group(worker)
        stop_process_group(beat)
        _teardown()

    def secs(value: float | None) -> str:
        return "never" if value is None else f"{value:.1f} s"

    def within(value: float | None) -> bool:
        return value is not None and value <= AIM_SECONDS

    statuses = sorted({status for status, _ in answers})
    slowest = max((seconds for _, seconds in answers), default=0.0)
    aim = f"≤ {AIM_SECONDS} s"
    vacuum_cancelled = "cancelled" if "Cancelled" in vacuum_run.error else "not cancelled"
    index_dropped = "yes" if "Dropped the INVALID" in apply_run.error else "no"
    figures += [
        Figure("VACUUM killed: run terminal after", secs(vacuum_terminal), aim, passed=within(vacuum_terminal)),
        Figure("VACUUM killed: a new run succeeded after", secs(vacuum_new), aim, passed=within(vacuum_new)),
        Figure("VACUUM killed: run status; its backend", f"{vacuum_run.status}; {vacuum_cancelled}"),
        Figure("apply killed: run terminal after", secs(apply_terminal), aim, passed=within(apply_terminal)),
        Figure("apply killed: a new run succeeded after", secs(apply_new), aim, passed=within(apply_new)),
        Figure("apply killed: invalid index dropped; recommendation", f"{index_dropped}; {recommendation.status}"),
        Figure(f"Redis down {OUTAGE_SECONDS} s: API answers", f"{len(answers)} answers: {statuses}", "503 only",
               passed=statuses == [503]),
        Figure(f"Redis down {OUTAGE_SECONDS} s: slowest answer", f"{slowest:.2f} s", "≤ 10 s", passed=slowest <= 10),
        Figure("Redis back: a run accepted and succeeded after", secs(redis_ok), aim, passed=within(redis_ok)),
        Figure("runs left live at the end", str(live_left), "0", passed=live_left == 0),
    ]  # fmt: skip
    return BenchResult(
        name="faults_runs",
        title="runs and applies always end: recovery after worker kills and a Redis outage",
        setup=(
            "gunicorn, one Celery worker (default and maintenance queues, concurrency 2) and beat with the "
            "default schedules (the reaper every 30 s) on the bench's servers; the target is a database on "
            "this machine's PostgreSQL 15. Each kill is a SIGKILL of the worker's process group while its "
            "statement runs on the target; a new worker is started at once, as the supervisor of `make run` "
            "does. Times are from the kill (or from Redis' restart) to the state named."
        ),
        figures=tuple(figures),
        notes=(
            "The reaper ends a run whose worker process provably died on this host at its next tick (beat, "
            "every 30 s), without waiting for the heartbeat deadline (`PERFPILOT_OPTIMIZER_RUN_STALE`, 60 s), "
            "so a run is terminal within about 30 s of the kill plus the cancel."
        ),
    )
