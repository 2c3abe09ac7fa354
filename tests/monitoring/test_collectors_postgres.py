"""The PostgreSQL collector against real servers: the session's embedded PostgreSQL 18 (with
pg_stat_statements) and this machine's PostgreSQL 15 on 127.0.0.1:5432 (database `test`)."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import quote

import psycopg
import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone
from psycopg import sql

from core.embedded import PG_OS_USER, EmbeddedPostgres
from monitoring.collectors.base import CollectorError, CollectResult, Measurement
from monitoring.collectors.postgres import MARKER, PostgresCollector
from monitoring.models import QueryStat, QueryText, Series, Target
from monitoring.selectors.statements import slow_queries
from monitoring.services.collection import collect_target
from monitoring.services.targets import TargetInput, target_create
from tests.conftest import free_port
from tests.monitoring.conftest import sample_count

COLLECTOR_DATABASE = f"pp_collector_{os.getpid()}"  # our own database on the embedded server
LOCAL_PG15_URL = "postgresql://postgres@127.0.0.1:5432/test"


@dataclass(frozen=True)
class Server:
    name: str
    url: str

    def connect(self, **kwargs) -> psycopg.Connection:
        return psycopg.connect(self.url, autocommit=True, connect_timeout=5, **kwargs)


def _embedded_url(database: str, *, password: str | None = None) -> str:
    db = settings.DATABASES["default"]
    password = quote(db["PASSWORD"] if password is None else password, safe="")
    return f"postgresql://{quote(db['USER'], safe='')}:{password}@{db['HOST']}:{db['PORT']}/{database}"


@pytest.fixture(scope="module")
def embedded() -> Iterator[Server]:
    """A database of our own on the embedded PostgreSQL 18; template1 gives it pg_stat_statements."""
    admin = Server("admin", _embedded_url("postgres"))
    name = sql.Identifier(COLLECTOR_DATABASE)
    with admin.connect() as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template1").format(name))
    yield Server("embedded-18", _embedded_url(COLLECTOR_DATABASE))
    with admin.connect() as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))


@pytest.fixture(scope="module")
def local15() -> Server:
    return Server("local-15", LOCAL_PG15_URL)


@pytest.fixture(params=["embedded", "local15"])
def server(request) -> Server:
    return request.getfixturevalue(request.param)


@pytest.fixture
def table(server: Server) -> Iterator[str]:
    """A fresh table name in the server's database, dropped afterwards."""
    name = f"pp_h2_{os.getpid()}_{time.monotonic_ns()}"
    yield name
    with server.connect() as conn:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))


def _unsaved_target(url: str, *, timeout: int = 5) -> Target:
    target = Target(name="unsaved", kind=Target.Kind.POSTGRES, timeout_seconds=timeout)
    target.url = url
    return target


def _saved_target(server: Server, name: str) -> Target:
    data = TargetInput(name=name, kind="postgres", url=server.url, interval_seconds=10, timeout_seconds=5)
    return target_create(data=data, actor=None, via="system")


def _values(result: CollectResult, metric: str) -> dict[tuple, float]:
    return {tuple(sorted(m.labels.items())): m.value for m in result.measurements if m.metric == metric}


def _value(result: CollectResult, metric: str, **labels: str) -> float:
    return _values(result, metric)[tuple(sorted(labels.items()))]


def _samples(target: Target, metric: str, **labels: str) -> list[float]:
    series = [s for s in Series.objects.filter(target=target, metric=metric) if s.labels == labels]
    if not series:
        return []
    with connection.cursor() as cursor:
        cursor.execute("SELECT value FROM monitoring_sample WHERE series_id = %s ORDER BY ts", [series[0].id])
        return [row[0] for row in cursor.fetchall()]


def _server_version(server: Server) -> int:
    with server.connect() as conn:
        return conn.info.server_version


def _statements_usable(server: Server) -> tuple[bool, bool]:
    """(installed in the database, preloaded), read directly from the server."""
    with server.connect() as conn:
        installed = conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'").fetchone()
        preload = conn.execute("SELECT current_setting('shared_preload_libraries')").fetchone()[0]
    return installed is not None, "pg_stat_statements" in preload


def _wait_until(predicate, *, timeout: float = 15, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"gave up waiting for {what}")


# --- connecting -------------------------------------------------------------------------------


def test_test_connection_names_the_server_version(server):
    version = _server_version(server)
    expected = f"PostgreSQL {version // 10000}.{version % 10000}"
    assert PostgresCollector(_unsaved_target(server.url)).test_connection() == expected


def test_sessions_are_read_only_and_bounded_by_the_timeout(server):
    collector = PostgresCollector(_unsaved_target(server.url, timeout=1))
    with collector.connect() as conn:
        row = conn.execute(
            "SELECT current_setting('statement_timeout'), current_setting('lock_timeout'),"
            " current_setting('default_transaction_read_only'), application_name"
            " FROM pg_stat_activity WHERE pid = pg_backend_pid()"
        ).fetchone()
    assert row == ("1s", "1s", "on", "perfpilot-collector")

    started = time.monotonic()
    timed_out = r"did not answer a query within 1 s \(statement_timeout\)"
    with pytest.raises(CollectorError, match=timed_out), collector.connect() as conn:
        conn.execute("SELECT pg_sleep(10)")
    assert time.monotonic() - started < 5

    with pytest.raises(CollectorError, match="read-only transaction"), collector.connect() as conn:
        conn.execute("CREATE TABLE pp_h2_never (id int)")


def _collector_backends(server: Server) -> list[int]:
    with server.connect() as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'perfpilot-collector' "
            "AND datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    return [pid for (pid,) in rows]


def test_the_connection_is_kept_between_collections_of_a_target(embedded):
    from monitoring.collectors import postgres as postgres_collector

    postgres_collector._kept.close_all()
    target = _unsaved_target(embedded.url)
    PostgresCollector(target).collect()
    first = _collector_backends(embedded)
    PostgresCollector(target).collect()
    assert len(first) == 1 and _collector_backends(embedded) == first  # one login, not one per collection
    postgres_collector._kept.close_all()
    _wait_until(lambda: not _collector_backends(embedded), what="the kept connection to close")


def test_a_kept_connection_that_died_costs_no_collection(embedded):
    from monitoring.collectors import postgres as postgres_collector

    postgres_collector._kept.close_all()
    target = _unsaved_target(embedded.url)
    PostgresCollector(target).collect()
    [killed] = _collector_backends(embedded)
    with embedded.connect() as conn:  # what a server restart or an idle_session_timeout does to it
        conn.execute("SELECT pg_terminate_backend(%s)", [killed])
    result = PostgresCollector(target).collect()
    assert result.measurements
    assert killed not in _collector_backends(embedded)
    postgres_collector._kept.close_all()


def test_a_down_target_raises_a_readable_error_without_the_password():
    secret = "s3cret-p%40ss"  # URL-encoded: neither form may leak
    url = f"postgresql://monitor:{secret}@127.0.0.1:{free_port()}/app"
    with pytest.raises(CollectorError) as caught:
        PostgresCollector(_unsaved_target(url, timeout=2)).collect()
    message = str(caught.value)
    assert "did not accept the connection" in message and "Connection refused" in message
    assert "127.0.0.1" in message
    assert secret not in message and "s3cret-p@ss" not in message


def test_an_invalid_url_is_reported_without_the_password():
    url = "postgresql://monitor:url-secret-9@127.0.0.1:5432/app?sslmode=bogus"
    with pytest.raises(CollectorError) as caught:
        PostgresCollector(_unsaved_target(url)).test_connection()
    assert "bogus" in str(caught.value) and "url-secret-9" not in str(caught.value)


def test_a_wrong_password_is_named_as_such(embedded):
    url = _embedded_url(COLLECTOR_DATABASE, password="wrong-pw-123")
    with pytest.raises(CollectorError) as caught:
        PostgresCollector(_unsaved_target(url)).test_connection()
    message = str(caught.value)
    assert "refused the login" in message and "password authentication failed" in message
    assert "wrong-pw-123" not in message


def test_a_down_target_is_recorded_down_without_the_password(clean_samples):
    target = target_create(
        data=TargetInput(
            name="pg-down",
            kind="postgres",
            url=f"postgresql://monitor:hunter2-secret@127.0.0.1:{free_port()}/app",
            timeout_seconds=2,
        ),
        actor=None,
        via="system",
    )
    outcome = collect_target(target=target)
    target.refresh_from_db()
    assert not outcome.ok and target.status == Target.Status.DOWN
    assert "Connection refused" in target.last_error and "hunter2-secret" not in target.last_error


# --- metrics ----------------------------------------------------------------------------------


def test_counters_become_rates_on_the_second_collection(server, clean_samples):
    target = _saved_target(server, f"pg-rates-{server.name}")
    assert collect_target(target=target).ok
    assert _samples(target, "postgres_commits_per_second", database=_database(server)) == []
    assert _samples(target, "postgres_cache_hit_ratio_percent", database=_database(server)) == []

    with server.connect() as conn:
        for _ in range(20):
            conn.execute("SELECT count(*) FROM pg_class")  # each a committed transaction
    time.sleep(0.3)
    outcome = collect_target(target=target)
    assert outcome.ok, outcome.error

    commits = _samples(target, "postgres_commits_per_second", database=_database(server))
    assert len(commits) == 1 and commits[0] > 0
    hit_ratio = _samples(target, "postgres_cache_hit_ratio_percent", database=_database(server))
    assert len(hit_ratio) == 1 and 0 <= hit_ratio[0] <= 100
    for metric in ("postgres_checkpoints_timed_per_second", "postgres_tuple_reads_per_second"):
        rates = _samples(target, metric, **({} if "checkpoints" in metric else {"database": _database(server)}))
        assert len(rates) == 1 and rates[0] >= 0, metric
    assert len(_samples(target, "postgres_connections", state="active")) == 2  # gauges from the first run on
    assert sample_count(Series.objects.get(target=target, metric="postgres_xid_wraparound_percent").id) == 2


def _database(server: Server) -> str:
    return server.url.rsplit("/", 1)[1]


def test_a_collection_reports_every_family_of_metrics(server):
    result = PostgresCollector(_unsaved_target(server.url)).collect()
    metrics = {m.metric for m in result.measurements}
    assert {
        "postgres_connections",
        "postgres_connections_used_percent",
        "postgres_commits_per_second",
        "postgres_rollbacks_per_second",
        "postgres_tuple_reads_per_second",
        "postgres_tuple_writes_per_second",
        "postgres_deadlocks_per_second",
        "postgres_temp_bytes_per_second",
        "postgres_database_size_bytes",
        "postgres_longest_query_age_seconds",
        "postgres_oldest_transaction_age_seconds",
        "postgres_blocked_sessions",
        "postgres_xid_wraparound_percent",
        "postgres_mxid_wraparound_percent",
        "postgres_checkpoints_timed_per_second",
        "postgres_checkpoints_requested_per_second",
    } <= metrics
    assert "postgres_cache_hit_ratio_percent" not in metrics  # no interval yet
    database = _database(server)
    assert _value(result, "postgres_database_size_bytes", database=database) > 1_000_000
    assert 0 < _value(result, "postgres_xid_wraparound_percent") < 100
    assert 0 < _value(result, "postgres_connections_used_percent") <= 100
    assert _value(result, "postgres_connections", state="active") >= 1  # the collector itself


def test_blocked_sessions_are_counted_while_a_lock_is_held(server, table):
    ident = sql.Identifier(table)
    with server.connect() as conn:
        conn.execute(sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, v int)").format(ident))
        conn.execute(sql.SQL("INSERT INTO {} VALUES (1, 0)").format(ident))
    collector = PostgresCollector(_unsaved_target(server.url))
    before = _value(collector.collect(), "postgres_blocked_sessions")

    update = sql.SQL("UPDATE {} SET v = v + 1 WHERE id = 1").format(ident)
    holder = psycopg.connect(server.url, connect_timeout=5)  # a transaction left open holds the row lock
    waiter = server.connect(options="-c lock_timeout=30s")
    waiter_pid = waiter.info.backend_pid
    thread = threading.Thread(target=waiter.execute, args=(update,))
    try:
        holder.execute(update)
        thread.start()
        with server.connect() as observer:
            _wait_until(
                lambda: observer.execute(
                    "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = %s", [waiter_pid]
                ).fetchone()[0],
                what="the second session to wait on the lock",
            )
        time.sleep(1.1)  # let the open transaction and the waiting query age
        during = collector.collect()
    finally:
        holder.commit()
        thread.join(30)
        holder.close()
        waiter.close()

    assert _value(during, "postgres_blocked_sessions") >= before + 1
    assert _value(during, "postgres_oldest_transaction_age_seconds") >= 1
    assert _value(during, "postgres_longest_query_age_seconds") >= 1
    assert _value(during, "postgres_connections", state="idle_in_transaction") >= 1
    if server.name == "embedded-18":  # a server of our own: nothing else can be blocked there
        assert _value(during, "postgres_blocked_sessions") == 1
        after = collector.collect()
        assert _value(after, "postgres_blocked_sessions") == 0


def test_a_table_full_of_dead_tuples_is_in_the_top_n(server, table):
    ident = sql.Identifier(table)
    with server.connect() as conn:
        conn.execute(sql.SQL("CREATE TABLE {} (id int, v int) WITH (autovacuum_enabled = false)").format(ident))
        conn.execute(sql.SQL("INSERT INTO {} SELECT g, 0 FROM generate_series(1, 30000) g").format(ident))
        for _ in range(2):
            conn.execute(sql.SQL("UPDATE {} SET v = v + 1").format(ident))
    with server.connect() as observer:
        # Backends flush their table statistics within about a second of going idle.
        _wait_until(
            lambda: (
                (
                    observer.execute(
                        "SELECT n_dead_tup FROM pg_stat_user_tables WHERE relid = to_regclass(%s)",
                        [sql.Identifier("public", table).as_string(observer)],
                    ).fetchone()
                    or (0,)
                )[0]
                >= 60000
            ),
            what="the dead tuples to reach the statistics",
        )
    result = PostgresCollector(_unsaved_target(server.url)).collect()
    labels = {"database": _database(server), "table": f"public.{table}"}
    assert _value(result, "postgres_table_dead_tuples", **labels) >= 60000
    assert 60 < _value(result, "postgres_table_dead_tuple_ratio_percent", **labels) < 70  # 2 dead per live row
    assert len(_values(result, "postgres_table_dead_tuples")) <= 10


def test_a_sequence_near_the_end_of_its_key_column_is_collected_as_a_series(server, table, clean_samples):
    """A bigint sequence feeding an integer key runs out at the column's 2^31 - 1, not its own maximum."""
    ident, sequence = sql.Identifier(table), f"{table}_seq"
    with server.connect() as conn:
        conn.execute(sql.SQL("CREATE SEQUENCE {} AS bigint").format(sql.Identifier(sequence)))
        conn.execute(
            sql.SQL("CREATE TABLE {} (id int PRIMARY KEY DEFAULT nextval({}))").format(ident, sql.Literal(sequence))
        )
        conn.execute("SELECT setval(%s, 2147000000)", [sequence])
    target = _saved_target(server, f"seq-{table}")  # clean_samples empties the tables afterwards
    try:
        assert collect_target(target=target).ok
        labels = {"database": _database(server), "sequence": f"public.{sequence}"}
        assert _samples(target, "postgres_sequence_used_percent", **labels) == [
            pytest.approx(100 * 2147000000 / 2147483647)
        ]
    finally:
        with server.connect() as conn:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(ident))
            conn.execute(sql.SQL("DROP SEQUENCE IF EXISTS {}").format(sql.Identifier(sequence)))


# --- pg_stat_statements -----------------------------------------------------------------------


def _workload(server: Server, query: sql.Composable, params_list: list[list]) -> None:
    with server.connect() as conn:
        for params in params_list:
            conn.execute(query, params)


def _stat_of(target: Target, needle: str) -> list[QueryStat]:
    queryids = list(QueryText.objects.filter(target=target, query__contains=needle).values_list("queryid", flat=True))
    return list(QueryStat.objects.filter(target=target, queryid__in=queryids).order_by("collected_at"))


def test_a_workload_between_collections_becomes_query_deltas_and_slow_queries(embedded, clean_samples):
    table = f"pp_h2_work_{os.getpid()}"
    ident = sql.Identifier(table)
    with embedded.connect() as conn:
        conn.execute(sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, v int)").format(ident))
        conn.execute(sql.SQL("INSERT INTO {} SELECT g, g % 7 FROM generate_series(1, 2000) g").format(ident))
    counting = sql.SQL("SELECT count(*) FROM {} WHERE v = %s").format(ident)
    summing = sql.SQL("SELECT sum(v) FROM {} WHERE id > %s").format(ident)
    target = _saved_target(embedded, "pg-workload")
    # The service counts a query from the first snapshot that has it: run both once beforehand.
    _workload(embedded, counting, [[0]])
    _workload(embedded, summing, [[0]])
    try:
        started = timezone.now()
        assert collect_target(target=target).ok  # the baseline snapshot
        _workload(embedded, counting, [[n % 7] for n in range(5)])
        assert collect_target(target=target).ok
        between = timezone.now()
        _workload(embedded, counting, [[1], [2], [3]])
        _workload(embedded, summing, [[n * 100] for n in range(7)])
        outcome = collect_target(target=target)
        assert outcome.ok and outcome.statements > 0
        ended = timezone.now()
    finally:
        with embedded.connect() as conn:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(ident))

    assert [s.calls for s in _stat_of(target, f'"{table}" WHERE v =')] == [5, 3]
    [summed] = _stat_of(target, f'"{table}" WHERE id >')
    assert summed.calls == 7 and summed.rows == 7 and summed.total_time_ms > 0
    assert summed.shared_blks_hit + summed.shared_blks_read > 0
    assert summed.interval_seconds > 0
    # Nothing the collector itself ran is counted.
    assert not QueryText.objects.filter(target=target, query__contains=MARKER).exists()
    assert not QueryText.objects.filter(target=target, query__contains="pg_stat_statements").exists()

    def calls(start, end, order_by="total_time") -> dict[str, int]:
        found = slow_queries(target_id=target.id, start=start, end=end, order_by=order_by, limit=50)
        return {q.query.split(" FROM")[0]: q.calls for q in found if table in q.query}

    assert calls(started, ended) == {"SELECT count(*)": 8, "SELECT sum(v)": 7}
    assert calls(between, ended, order_by="calls") == {"SELECT count(*)": 3, "SELECT sum(v)": 7}
    assert calls(started, between) == {"SELECT count(*)": 5}  # the later query is not in the earlier window
    assert calls(started - timedelta(hours=1), started) == {}
    [row] = [q for q in slow_queries(target_id=target.id, start=between, end=ended) if "sum(v)" in q.query]
    assert row.database == COLLECTOR_DATABASE and row.mean_time_ms == pytest.approx(row.total_time_ms / 7)
    assert row.hit_ratio_percent is not None and 0 <= row.hit_ratio_percent <= 100


def test_a_database_without_pg_stat_statements_still_collects_with_a_note(embedded, clean_samples):
    bare = f"pp_bare_{os.getpid()}"
    admin = Server("admin", _embedded_url("postgres"))
    with admin.connect() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(bare)))
    try:
        result = PostgresCollector(_unsaved_target(_embedded_url(bare))).collect()
    finally:
        with admin.connect() as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(bare)))
    assert result.statements is None
    [note] = result.notes
    assert f"pg_stat_statements is not installed in database “{bare}”" in note
    assert "CREATE EXTENSION pg_stat_statements" in note
    assert "shared_preload_libraries" not in note  # it is preloaded on this server: one step is enough
    assert ("database", bare) in next(iter(_values(result, "postgres_commits_per_second")))


def test_the_local_postgresql_15_reports_statements_or_says_how_to_enable_them(local15, clean_samples):
    installed, preloaded = _statements_usable(local15)
    target = _saved_target(local15, "pg-local-15")
    result = PostgresCollector(target).collect()
    outcome = collect_target(target=target)
    target.refresh_from_db()
    assert outcome.ok and target.status == Target.Status.UP
    assert _value(result, "postgres_commits_per_second", database="test") >= 0  # the rest still works
    if installed and preloaded:
        assert result.statements is not None and result.notes == []
        assert all(MARKER not in s.query for s in result.statements)
        return
    assert result.statements is None
    [note] = result.notes
    assert note in target.last_notes and target.last_error == ""  # a note, shown on the target page, not an error
    assert "shared_preload_libraries" in note and "restart PostgreSQL" in note
    if installed:
        assert "installed in database “test” but not loaded" in note
    else:
        assert "not installed in database “test”" in note and "CREATE EXTENSION pg_stat_statements" in note


def test_measurements_are_plain_floats_with_units(embedded):
    result = PostgresCollector(_unsaved_target(embedded.url)).collect()
    assert all(isinstance(m, Measurement) and isinstance(m.value, float) for m in result.measurements)
    units = {m.metric: m.unit for m in result.measurements}
    assert units["postgres_database_size_bytes"] == "bytes"
    assert units["postgres_longest_query_age_seconds"] == "s"
    assert units["postgres_connections_used_percent"] == "%"
    assert units["postgres_commits_per_second"] == "/s"


def test_an_unprivileged_user_still_collects_and_is_told_what_to_grant(embedded):
    role, password = f"pp_h2_limited_{os.getpid()}", "limited-pw-42"
    admin = Server("admin", _embedded_url("postgres"))
    with admin.connect() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(password)))
    url = embedded.url.replace(f"//{quote(settings.DATABASES['default']['USER'], safe='')}:", f"//{role}:", 1)
    url = url.replace(f":{quote(settings.DATABASES['default']['PASSWORD'], safe='')}@", f":{password}@", 1)
    try:
        with embedded.connect() as other:  # another user's session and statements in the database
            other.execute("SELECT count(*) FROM pg_class WHERE relkind = 'r'")
            result = PostgresCollector(_unsaved_target(url)).collect()
    finally:
        with admin.connect() as conn:
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
    assert result.statements is not None
    assert any("GRANT pg_monitor" in note and "queries of other users" in note for note in result.notes)
    assert any("GRANT pg_monitor" in note and "other users' sessions" in note for note in result.notes)
    assert _value(result, "postgres_connections", state="unknown") >= 1
    assert _value(result, "postgres_database_size_bytes", database=COLLECTOR_DATABASE) > 0


# --- replication ------------------------------------------------------------------------------


def _run_pg(program: str, *args: str, env: dict | None = None) -> None:
    """A PostgreSQL program of the embedded installation, as the system user the server runs as."""
    run_as = {}
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        entry = pwd.getpwnam(PG_OS_USER)
        run_as = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
    bin_dir = EmbeddedPostgres(root=settings.VAR_DIR, port=0, user="", password="", database="").bin_dir
    result = subprocess.run(
        [str(bin_dir / program), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        start_new_session=True,
        **run_as,
    )
    assert result.returncode == 0, f"{program} failed: {result.stderr}"


@pytest.fixture
def standby(embedded) -> Iterator[Server]:
    """A streaming standby of the embedded server (pg_basebackup -R), named pp-standby."""
    db = settings.DATABASES["default"]
    root = settings.VAR_DIR / f"standby-{os.getpid()}"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    if os.geteuid() == 0:
        entry = pwd.getpwnam(PG_OS_USER)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    data, port = root / "data", free_port()
    primary = f"host={db['HOST']} port={db['PORT']} user={db['USER']}"
    backup = ("pg_basebackup", "-D", str(data), "-R", "-X", "stream", "-c", "fast", "-d", primary)
    _run_pg(*backup, env={"PGPASSWORD": db["PASSWORD"]})
    # Command-line settings win over the primary's copied configuration.
    options = f"-p {port} -c cluster_name=pp-standby"
    _run_pg("pg_ctl", "start", "-w", "-t", "60", "-D", str(data), "-l", str(root / "server.log"), "-o", options)
    try:
        with embedded.connect() as conn:
            _wait_until(
                lambda: conn.execute(
                    "SELECT 1 FROM pg_stat_replication WHERE application_name = 'pp-standby' AND replay_lsn IS NOT NULL"
                ).fetchone(),
                what="the standby to stream",
            )
        yield Server("standby", _embedded_url(COLLECTOR_DATABASE).replace(f":{db['PORT']}/", f":{port}/"))
    finally:
        _run_pg("pg_ctl", "stop", "-w", "-t", "60", "-m", "fast", "-D", str(data))
        shutil.rmtree(root, ignore_errors=True)


def test_replication_lag_is_reported_by_the_primary_per_replica_and_by_the_standby(embedded, standby):
    with embedded.connect() as conn:  # some WAL for the standby to replay
        conn.execute("SELECT pg_switch_wal()")
    primary = PostgresCollector(_unsaved_target(embedded.url)).collect()
    replica = {"replica": "pp-standby@127.0.0.1"}
    assert _value(primary, "postgres_replication_lag_bytes", **replica) >= 0
    assert _value(primary, "postgres_replication_lag_seconds", **replica) >= 0
    assert () not in _values(primary, "postgres_replication_lag_bytes")  # a primary lags behind nobody

    collector = PostgresCollector(_unsaved_target(standby.url))
    assert collector.test_connection().startswith("PostgreSQL 18.")
    own = collector.collect()
    assert set(_values(own, "postgres_replication_lag_bytes")) == {()}
    assert _value(own, "postgres_replication_lag_bytes") >= 0
    assert _value(own, "postgres_replication_lag_seconds") >= 0
    assert _value(own, "postgres_database_size_bytes", database=COLLECTOR_DATABASE) > 0
