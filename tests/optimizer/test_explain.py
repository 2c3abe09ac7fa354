"""EXPLAIN on real targets (the embedded PostgreSQL 18 and this machine's 15): plain and generic plans,
EXPLAIN ANALYZE always rolled back, one run per query at a time, and the reaper for a dead worker."""

from __future__ import annotations

import os
import socket

import pytest
from django.conf import settings

from core.errors import Conflict, InvalidInput
from core.models import AuditEvent
from optimizer.models import ExplainRun
from optimizer.services.explain import (
    explain,
    explain_analyze_cancel,
    explain_analyze_execute,
    explain_analyze_start,
    explain_runs_reap,
    query_check,
)
from tests.optimizer.conftest import make_target

TABLE = f"explain_orders_{os.getpid()}"


@pytest.fixture(params=["pg18", "pg15"])
def database(request):
    database = request.getfixturevalue(request.param)
    database.execute(
        f"DROP TABLE IF EXISTS {TABLE}",
        f"CREATE TABLE {TABLE} (id int PRIMARY KEY, status text, total int)",
        f"INSERT INTO {TABLE} SELECT g, CASE WHEN g % 10 = 0 THEN 'lost' ELSE 'ok' END, g"
        " FROM generate_series(1, 2000) g",
        f"ANALYZE {TABLE}",
    )
    yield database
    database.execute(f"DROP TABLE IF EXISTS {TABLE}")


@pytest.fixture
def target(db, database):
    return make_target(database)


def test_plain_explain_plans_a_query_with_constants_without_running_it(target, operator_user):
    result = explain(target=target, query=f"SELECT * FROM {TABLE} WHERE id = 42;", actor=operator_user, via="api")
    assert result.mode == "plain" and result.method == "EXPLAIN"
    assert result.tree.nodes[0].node_type == "Index Scan" and result.tree.nodes[0].detail.startswith(f"on {TABLE}")
    assert not result.tree.analyzed and result.tree.worst is result.tree.nodes[0]
    assert AuditEvent.objects.filter(action="optimizer.explain", actor=operator_user).count() == 1


def test_normalized_text_gets_the_generic_plan_on_every_version(target, database, operator_user):
    result = explain(target=target, query=f"SELECT * FROM {TABLE} WHERE id = $1 AND total > $2", actor=None, via="api")
    assert result.mode == "generic"
    if database.version >= 160000:
        assert result.method == "EXPLAIN (GENERIC_PLAN)"
    else:
        assert result.method.startswith("PREPARE + EXPLAIN EXECUTE")
    node = result.tree.nodes[0]
    assert node.node_type == "Index Scan" and "$1" in node.detail and "$2" in node.detail
    # The prepared statement is gone: the same text explains again on a new session, and not prepared twice.
    assert explain(target=target, query=f"SELECT * FROM {TABLE} WHERE id = $1", actor=None, via="api").mode == "generic"


def test_a_second_statement_behind_a_semicolon_is_refused_and_nothing_runs(target):
    with pytest.raises(InvalidInput) as refused:
        explain(target=target, query=f"SELECT 1; DROP TABLE {TABLE}", actor=None, via="api")
    assert refused.value.field == "query"
    assert target and query_check("SELECT ';' AS a; ") == ("SELECT ';' AS a", False)


def test_a_query_the_target_rejects_is_a_400_naming_the_query(target):
    with pytest.raises(InvalidInput) as refused:
        explain(target=target, query="SELECT * FROM no_such_table_here", actor=None, via="api")
    assert refused.value.status_code == 400 and refused.value.field == "query"
    assert "no_such_table_here" in str(refused.value)


def test_explain_analyze_of_a_delete_reports_the_rows_and_leaves_every_row(target, database, operator_user):
    planned = explain(target=target, query=f"DELETE FROM {TABLE} WHERE status = 'lost'", actor=None, via="api")
    assert planned.tree.nodes[0].node_type == "ModifyTable" and planned.plan[0]["Plan"]["Operation"] == "Delete"
    run, created = explain_analyze_start(
        target=target, query=f"DELETE FROM {TABLE} WHERE status = 'lost'", actor=operator_user, via="api"
    )
    assert created and run.status == "pending"
    run = explain_analyze_execute(run_id=run.id)
    assert run.status == "done", run.error
    assert run.backend_pid and run.finished_at and run.owner["pid"] == os.getpid()
    top = run.plan[0]["Plan"]
    assert top["Node Type"] == "ModifyTable" and top["Plans"][0]["Actual Rows"] == 200
    assert "Shared Hit Blocks" in top  # BUFFERS
    assert database.scalar(f"SELECT count(*) FROM {TABLE}") == 2000
    assert database.scalar(f"SELECT count(*) FROM {TABLE} WHERE status = 'lost'") == 200
    actions = set(AuditEvent.objects.filter(detail__run=run.id).values_list("action", flat=True))
    assert actions == {"optimizer.explain_analyze.start", "optimizer.explain_analyze.end"}


def test_explain_analyze_stops_at_its_statement_timeout_and_says_so(target):
    run, _ = explain_analyze_start(
        target=target, query="SELECT pg_sleep(5)", actor=None, via="api", statement_timeout_seconds=1
    )
    run = explain_analyze_execute(run_id=run.id)
    assert run.status == "failed"
    assert "statement_timeout (1 s)" in run.error and run.plan is None


def test_explain_analyze_needs_constants_and_a_timeout_within_the_setting(target):
    with pytest.raises(InvalidInput) as refused:
        explain_analyze_start(target=target, query=f"SELECT * FROM {TABLE} WHERE id = $1", actor=None, via="api")
    assert refused.value.field == "query"
    too_long = settings.EXPLAIN_ANALYZE_TIMEOUT_SECONDS + 1
    with pytest.raises(InvalidInput) as refused:
        explain_analyze_start(
            target=target, query="SELECT 1", actor=None, via="api", statement_timeout_seconds=too_long
        )
    assert refused.value.field == "statement_timeout_seconds"
    assert not ExplainRun.objects.exists()


def test_one_run_per_query_and_target_at_a_time(target, database):
    first, created = explain_analyze_start(target=target, query="SELECT count(*) FROM pg_class", actor=None, via="api")
    assert created
    again, created_again = explain_analyze_start(
        target=target, query="SELECT   count(*)\nFROM pg_class;", actor=None, via="api"
    )
    assert (again.id, created_again) == (first.id, False)
    other, created_other = explain_analyze_start(target=target, query="SELECT 2", actor=None, via="api")
    assert created_other and other.id != first.id
    explain_analyze_execute(run_id=first.id)
    after, created_after = explain_analyze_start(
        target=target, query="SELECT count(*) FROM pg_class", actor=None, via="api"
    )
    assert created_after and after.id != first.id  # once it ended, the query may run again


def test_a_pending_run_cancelled_never_runs_and_a_finished_one_cannot_be_cancelled(target, operator_user):
    run, _ = explain_analyze_start(target=target, query=f"DELETE FROM {TABLE}", actor=operator_user, via="ui")
    run = explain_analyze_cancel(run=run, actor=operator_user, via="ui")
    assert run.status == "cancelled" and run.cancel_requested_by == operator_user.username
    assert explain_analyze_execute(run_id=run.id).status == "cancelled"  # the task comes late: nothing runs
    with pytest.raises(Conflict):
        explain_analyze_cancel(run=run, actor=operator_user, via="ui")


def test_the_reaper_ends_a_run_whose_worker_is_gone(target):
    run, _ = explain_analyze_start(target=target, query="SELECT 3", actor=None, via="api")
    dead = {"host": socket.gethostname(), "pid": 2**22 + 17, "started": 1.0, "task_id": "gone"}
    ExplainRun.objects.filter(pk=run.pk).update(status="running", owner=dead, backend_pid=2**22 + 18)
    alive, _ = explain_analyze_start(target=target, query="SELECT 4", actor=None, via="api")
    ExplainRun.objects.filter(pk=alive.pk).update(status="running", owner={"host": "elsewhere", "pid": 1})
    assert explain_runs_reap() == [run.id]
    run.refresh_from_db()
    assert run.status == "interrupted" and run.finished_at is not None
    assert run.error.startswith(f"Interrupted: the worker running it (pid {2**22 + 17} on ")
    assert ExplainRun.objects.get(pk=alive.pk).status == "running"  # a fresh run elsewhere is left alone
