"""Live activity with cancel and terminate, against the embedded PostgreSQL 18 and this machine's PostgreSQL 15."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import psycopg
import pytest

from core.errors import Conflict
from core.models import AuditEvent
from optimizer.activity_selectors import LIVE_FOR_OPERATORS, Backend, activity_read
from optimizer.services.activity import backend_signal
from tests.optimizer.conftest import Database, make_target, wait_for

API = "/api/v1/performance/database/activity"
HTMX = {"HTTP_HX_REQUEST": "true"}
MARK = f"pp_activity_{os.getpid()}"


@pytest.fixture(params=["pg18", "pg15"])
def database(request) -> Database:
    return request.getfixturevalue(request.param)


@contextmanager
def running(database: Database, query: str, *, open_transaction: bool = False) -> Iterator[tuple[int, list]]:
    """A session running `query` in a thread (inside an open transaction if asked); yields its pid and what
    the query raised. The connection is closed afterwards, whatever happened to it."""
    conn = psycopg.connect(database.url, autocommit=not open_transaction, connect_timeout=5)
    raised: list[BaseException] = []

    def run() -> None:
        try:
            conn.execute(query)
        except psycopg.Error as exc:
            raised.append(exc)

    thread = threading.Thread(target=run)
    pid = conn.info.backend_pid
    thread.start()
    try:
        yield pid, raised
    finally:
        if thread.is_alive():
            with database.connect() as admin:
                admin.execute("SELECT pg_cancel_backend(%s)", [pid])
        thread.join(30)
        conn.close()


def _backend(target, pid: int, *, state: str = "active") -> Backend:
    found: list[Backend] = []

    def listed() -> bool:
        found[:] = [b for b in activity_read(target=target, live=True).backends if b.pid == pid and b.state == state]
        return bool(found)

    wait_for(listed, what=f"backend {pid} {state} in the activity")
    return found[0]


def _alive(database: Database, pid: int) -> bool:
    return bool(database.scalar("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid]))


def _signal(target, backend: Backend, action: str, actor=None):
    return backend_signal(
        target=target,
        action=action,
        pid=backend.pid,
        backend_start=backend.backend_start,
        query_start=backend.query_start,
        actor=actor,
        via="ui",
    )


def test_a_sleeping_query_is_listed_then_cancelled_and_audited(db, database, operator_user):
    target = make_target(database)
    with running(database, f"SELECT pg_sleep(60) /* {MARK} */") as (pid, raised):
        backend = _backend(target, pid)
        assert MARK in backend.query and backend.wait == "Timeout: PgSleep"
        result = _signal(target, backend, "cancel", actor=operator_user)
        assert result.signalled and MARK in result.query
        wait_for(lambda: bool(raised), what="the query to be cancelled")
        assert isinstance(raised[0], psycopg.errors.QueryCanceled)
        assert _alive(database, pid)  # cancelling leaves the connection open
    event = AuditEvent.objects.get(action="optimizer.backend_cancel")
    assert event.actor_name == operator_user.username and event.result == "ok"
    assert event.detail["pid"] == pid and event.detail["target"] == target.name and MARK in event.detail["query"]


def test_a_backend_terminated_is_gone_from_pg_stat_activity(db, database):
    target = make_target(database)
    with running(database, f"SELECT pg_sleep(60) /* {MARK} */") as (pid, raised):
        result = _signal(target, _backend(target, pid), "terminate")
        assert result.signalled
        assert not _alive(database, pid)  # PostgreSQL 14+ waits until it is gone
        wait_for(lambda: bool(raised), what="the client to see its connection closed")
    assert AuditEvent.objects.get(action="optimizer.backend_terminate").detail["signalled"] is True


def test_a_session_idle_in_a_transaction_is_listed_with_its_age(db, database):
    target = make_target(database)
    with psycopg.connect(database.url, connect_timeout=5) as conn:  # not autocommit: the SELECT opens a transaction
        conn.execute(f"SELECT 1 /* {MARK} */")
        pid = conn.info.backend_pid
        backend = _backend(target, pid, state="idle in transaction")
        assert pid in [b.pid for b in activity_read(target=target, live=True).idle_in_transaction]
        assert backend.xact_seconds is not None and backend.xact_seconds >= 0 and MARK in backend.query
        conn.rollback()


def test_a_blocked_session_is_shown_under_its_blocker_with_its_waiting_lock(db, database, operator_client):
    table = f"{MARK}_rows"
    database.execute(f"DROP TABLE IF EXISTS {table}", f"CREATE TABLE {table} (id int PRIMARY KEY, v int)")
    database.execute(f"INSERT INTO {table} VALUES (1, 0)")
    target = make_target(database)
    holder = psycopg.connect(database.url, connect_timeout=5)
    try:
        holder.execute(f"UPDATE {table} SET v = 1 WHERE id = 1")  # the row lock stays with the open transaction
        with running(database, f"UPDATE {table} SET v = 2 WHERE id = 1") as (waiter, _raised):
            _backend(target, waiter)
            wait_for(
                lambda: any(b.pid == waiter and b.blocked_by for b in activity_read(target=target, live=True).backends),
                what="the second update to wait on the first",
            )
            activity = activity_read(target=target, live=True)
            rows = [(row.pid, row.depth) for row in activity.blocking]
            at = rows.index((holder.info.backend_pid, 0))
            assert rows[at + 1] == (waiter, 1)
            assert any(lock["pid"] == waiter and not lock["granted"] for lock in activity.locks)

            page = operator_client.get(f"/optimizer/database/{target.id}/activity/?fragment=activity", **HTMX)
            html = page.content.decode()
            assert page.status_code == 200 and html.lstrip().startswith('<div id="activity"')
            blocker_row = f'data-testid="blocking-row" data-pid="{holder.info.backend_pid}" data-depth="0"'
            waiter_row = f'data-testid="blocking-row" data-pid="{waiter}" data-depth="1"'
            assert html.index(blocker_row) < html.index(waiter_row)
            holder.rollback()
    finally:
        holder.close()
        database.execute(f"DROP TABLE IF EXISTS {table}")


def test_a_backend_is_not_signalled_once_it_runs_another_query_or_is_not_a_client_of_the_database(db, pg18):
    target = make_target(pg18)
    with running(pg18, "SELECT pg_sleep(60)") as (pid, raised):
        now = _backend(target, pid)
        with pytest.raises(Conflict, match="another query") as refused:
            _signal(target, replace(now, query_start=now.backend_start), "terminate")  # shown before this query
        assert refused.value.field == "query_start"
        with pytest.raises(Conflict, match="another session"):
            _signal(target, replace(now, backend_start=now.backend_start.replace(year=2000)), "cancel")  # reused pid
        assert _alive(pg18, pid) and not raised
    checkpointer, start = (
        pg18.connect()
        .execute("SELECT pid, backend_start FROM pg_stat_activity WHERE backend_type = 'checkpointer'")
        .fetchone()
    )
    with pytest.raises(Conflict, match="not a client session"):
        _signal(target, replace(now, pid=checkpointer, backend_start=start, query_start=None), "terminate")
    assert _alive(pg18, checkpointer)
    assert AuditEvent.objects.filter(action__startswith="optimizer.backend_", result="failed").count() == 3


def _api_body(target, backend: dict) -> dict:
    return {k: backend[k] for k in ("pid", "backend_start", "query_start")} | {"target": target.id}


def test_the_api_lists_activity_and_cancels_with_the_times_it_listed(db, pg18, anonymous_client, operator_auth):
    target = make_target(pg18)
    with running(pg18, f"SELECT pg_sleep(60) /* {MARK} */") as (pid, raised):
        _backend(target, pid)
        listed = anonymous_client.get(API, {"target": target.id}, **operator_auth).json()
        assert listed["error"] == "" and listed["allow_terminate"] is True
        backend = next(b for b in listed["running"] if b["pid"] == pid)
        response = anonymous_client.post(
            f"{API}/cancel", _api_body(target, backend), "application/json", **operator_auth
        )
        assert response.status_code == 200, response.content
        assert response.json()["signalled"] is True and response.json()["action"] == "cancel"
        wait_for(lambda: bool(raised), what="the query to be cancelled")
        stale = {**_api_body(target, backend), "query_start": backend["backend_start"]}  # a query shown earlier
        again = anonymous_client.post(f"{API}/cancel", stale, "application/json", **operator_auth)
        assert again.status_code == 409 and again.json()["field"] == "query_start"


def test_viewers_see_no_live_activity_and_may_not_signal(db, pg18, anonymous_client, viewer_auth, viewer_client):
    target = make_target(pg18)
    with running(pg18, "SELECT pg_sleep(60)") as (pid, raised):
        listed = anonymous_client.get(API, {"target": target.id}, **viewer_auth).json()
        assert listed["error"] == LIVE_FOR_OPERATORS and listed["running"] == []
        backend = {"pid": pid, "backend_start": "2026-01-01T00:00:00Z", "query_start": "2026-01-01T00:00:01Z"}
        for action in ("cancel", "terminate"):
            api = anonymous_client.post(
                f"{API}/{action}", _api_body(target, backend), "application/json", **viewer_auth
            )
            assert api.status_code == 403
            page = viewer_client.post(f"/optimizer/database/{target.id}/activity/{action}/", backend)
            assert page.status_code == 403
        html = viewer_client.get(f"/optimizer/database/{target.id}/activity/").content.decode()
        assert LIVE_FOR_OPERATORS in html and 'data-testid="cancel"' not in html
        assert _alive(pg18, pid) and not raised


def test_terminate_is_refused_when_turned_off_and_cancel_still_works(
    db, pg18, anonymous_client, operator_auth, operator_client, settings
):
    settings.OPTIMIZER_ALLOW_TERMINATE = False
    target = make_target(pg18)
    with running(pg18, "SELECT pg_sleep(60)") as (pid, raised):
        _backend(target, pid)
        listed = anonymous_client.get(API, {"target": target.id}, **operator_auth).json()["running"]
        backend = next(b for b in listed if b["pid"] == pid)
        refused = anonymous_client.post(
            f"{API}/terminate", _api_body(target, backend), "application/json", **operator_auth
        )
        assert refused.status_code == 403 and "PERFPILOT_ALLOW_TERMINATE" in refused.json()["detail"]
        page = operator_client.post(f"/optimizer/database/{target.id}/activity/terminate/", backend, **HTMX)
        assert page.status_code == 422 and "PERFPILOT_ALLOW_TERMINATE" in page.content.decode()
        assert _alive(pg18, pid) and not raised
        html = operator_client.get(f"/optimizer/database/{target.id}/activity/").content.decode()
        assert 'data-testid="cancel"' in html and 'data-testid="terminate"' not in html
        done = operator_client.post(f"/optimizer/database/{target.id}/activity/cancel/", backend, **HTMX)
        assert done.status_code == 200 and done["HX-Trigger"] == "activity-changed"
        wait_for(lambda: bool(raised), what="the query to be cancelled")
    assert AuditEvent.objects.filter(action="optimizer.backend_terminate", result="denied").count() == 2
