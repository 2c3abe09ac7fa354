"""The PostgreSQL collector: activity, throughput, cache, bloat, wraparound, replication, statements.

One read-only connection per target, kept between collections (PostgreSQL 13-18). The database
in the URL is the one monitored: pg_stat_database counters, tables and pg_stat_statements are
read for it, while sizes, wraparound, connections and activity cover the whole server.
Metrics (labels in braces):
    postgres_connections{state}              client backends by state (active, idle, ...)
    postgres_connections_used_percent        client backends / max_connections
    postgres_commits_per_second{database}, postgres_rollbacks_per_second{database}     COUNTER
    postgres_cache_hit_ratio_percent{database}   blks_hit / (blks_hit + blks_read) over the interval
                                             (from self.state); absent on the first collection,
                                             after a stats reset, and when no block was accessed
    postgres_tuple_reads_per_second{database}    COUNTER of tup_returned + tup_fetched
    postgres_tuple_writes_per_second{database}   COUNTER of tup_inserted + tup_updated + tup_deleted
    postgres_deadlocks_per_second{database}      COUNTER
    postgres_temp_bytes_per_second{database}     COUNTER
    postgres_database_size_bytes{database}   every database we may connect to, templates excepted
    postgres_longest_query_age_seconds       oldest running (active) query of another client backend
    postgres_oldest_transaction_age_seconds  oldest open transaction of another client backend
    postgres_blocked_sessions                client backends waiting on a lock another one holds
    postgres_table_dead_tuples{database,table}, postgres_table_dead_tuple_ratio_percent{database,table}
                                             the TOP_DEAD_TUPLE_TABLES tables with most dead tuples
    postgres_xid_wraparound_percent, postgres_mxid_wraparound_percent   max over databases, of 2^31
    postgres_replication_lag_bytes{replica}, postgres_replication_lag_seconds{replica}
                                             per connected replica (from pg_stat_replication); on a
                                             standby also its own lag behind its primary (no label)
    postgres_checkpoints_timed_per_second, postgres_checkpoints_requested_per_second   COUNTER
    postgres_sequence_used_percent{database,sequence}
                                             the TOP_SEQUENCES sequences nearest their end: last value
                                             as a share of the lower of their maximum and the maximum
                                             of the columns they feed (PgHero's sequence check)

CollectResult.statements holds cumulative pg_stat_statements counters of the monitored database,
one per queryid (summed over users), without the collector's own queries; None plus a note when
the extension is missing or not preloaded.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import errors, sql

from core import outbound
from core.conninfo import bounded_conninfo, scrub
from monitoring.collectors.base import (
    COUNTER,
    Collector,
    CollectorError,
    CollectResult,
    Measurement,
    StatementCounters,
    register,
)
from monitoring.collectors.kept import KeptConnections

APPLICATION_NAME = "perfpilot-collector"
# Placed after each statement's first keyword: pg_stat_statements keeps comments inside a
# statement's text but drops leading ones, and this marker is how our own queries are left out.
MARKER = "/* perfpilot-collector */"
MIN_SERVER_VERSION = 130000
TOP_DEAD_TUPLE_TABLES = 10
TOP_SEQUENCES = 20
WRAPAROUND_LIMIT = 2**31
_CONNECTION_STATES = ("active", "idle", "idle_in_transaction", "idle_in_transaction_aborted")


def _marked(query: str) -> sql.SQL:
    keyword, rest = query.strip().split(None, 1)
    return sql.SQL(f"{keyword} {MARKER} {rest}")


_SERVER_SQL = _marked(
    """SELECT current_database(), pg_is_in_recovery(), current_setting('max_connections')::int,
              (SELECT setting FROM pg_settings WHERE name = 'shared_preload_libraries')"""
)
# Without pg_read_all_stats, other users' sessions show no backend_type or state: a session with
# a database and a user is then counted as a client backend in state "unknown".
_CONNECTIONS_SQL = _marked(
    """SELECT coalesce(state, 'unknown'), count(*) FROM pg_stat_activity
       WHERE backend_type = 'client backend'
          OR (backend_type IS NULL AND datid IS NOT NULL AND usesysid IS NOT NULL)
       GROUP BY 1"""
)
# Only backends waiting on a heavyweight lock can have blockers: pg_blocking_pids takes every
# lock-manager partition lock, so it is called for those alone.
_ACTIVITY_SQL = _marked(
    """SELECT coalesce(max(greatest(extract(epoch FROM now() - query_start), 0))
                       FILTER (WHERE state = 'active'), 0)::float8,
              coalesce(max(greatest(extract(epoch FROM now() - xact_start), 0))
                       FILTER (WHERE state <> 'idle' AND xact_start IS NOT NULL), 0)::float8,
              count(*) FILTER (WHERE wait_event_type = 'Lock' AND cardinality(pg_blocking_pids(pid)) > 0)
       FROM pg_stat_activity
       WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"""
)
_DATABASE_STATS_SQL = _marked(
    """SELECT xact_commit, xact_rollback, blks_read, blks_hit, tup_returned + tup_fetched,
              tup_inserted + tup_updated + tup_deleted, deadlocks, temp_bytes, stats_reset::text
       FROM pg_stat_database WHERE datname = current_database()"""
)
# datconnlimit = -2 marks a database whose DROP was interrupted; it cannot be measured.
_DATABASES_SQL = _marked(
    """SELECT datname,
              CASE WHEN NOT datistemplate AND datconnlimit <> -2
                        AND (has_database_privilege(oid, 'CONNECT') OR pg_has_role('pg_read_all_stats', 'MEMBER'))
                   THEN pg_database_size(oid) END,
              age(datfrozenxid), mxid_age(datminmxid)
       FROM pg_database"""
)
_DEAD_TUPLES_SQL = _marked(
    """SELECT schemaname || '.' || relname, n_dead_tup, n_live_tup FROM pg_stat_user_tables
       WHERE n_dead_tup > 0 ORDER BY n_dead_tup DESC, 1 LIMIT %s"""
)
# Sequences nearest their end (ascending, not cycling, readable by the user). A sequence runs out at
# the lower of its own maximum and the maximum of the columns it feeds: a bigint sequence behind an
# integer key fails at 2^31 - 1 like an integer one. It feeds a column as serial/identity (pg_depend
# 'a'/'i') or through a column default calling nextval (pg_attrdef's dependency). The optimizer's
# sequences tuner reads the same rows to draft the ALTER statements.
SEQUENCES_SQL = _marked(
    """WITH feeds AS (
         SELECT d.objid AS seq, d.refobjid AS rel, d.refobjsubid AS attnum
         FROM pg_depend d
         WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
           AND d.deptype IN ('a', 'i') AND d.refobjsubid > 0
         UNION
         SELECT d.refobjid, ad.adrelid, ad.adnum
         FROM pg_attrdef ad JOIN pg_depend d ON d.classid = 'pg_attrdef'::regclass AND d.objid = ad.oid
         WHERE d.refclassid = 'pg_class'::regclass
       ), fed AS (
         SELECT f.seq, n.nspname::text AS table_schema, c.relname::text AS table_name,
                a.attname::text AS column_name, format_type(a.atttypid, NULL) AS column_type,
                CASE a.atttypid WHEN 'int2'::regtype THEN 32767 WHEN 'int4'::regtype THEN 2147483647
                                ELSE 9223372036854775807 END::bigint AS column_max
         FROM feeds f JOIN pg_class c ON c.oid = f.rel JOIN pg_namespace n ON n.oid = c.relnamespace
         JOIN pg_attribute a ON a.attrelid = f.rel AND a.attnum = f.attnum AND NOT a.attisdropped
       ), used AS (
         SELECT n.nspname::text AS schema, c.relname::text AS name, format_type(s.seqtypid, NULL) AS sequence_type,
                CASE WHEN has_sequence_privilege(s.seqrelid, 'SELECT,USAGE')
                     THEN pg_sequence_last_value(s.seqrelid) END AS last_value,
                s.seqmax AS sequence_max,
                least(s.seqmax, (SELECT min(column_max) FROM fed WHERE fed.seq = s.seqrelid)) AS limit_value,
                coalesce((SELECT json_agg(json_build_object('schema', table_schema, 'table', table_name,
                                                            'column', column_name, 'type', column_type)
                                          ORDER BY table_schema, table_name, column_name)
                          FROM fed WHERE fed.seq = s.seqrelid), '[]') AS columns
         FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE NOT s.seqcycle AND s.seqincrement > 0
       )
       SELECT schema, name, sequence_type, last_value, sequence_max, limit_value,
              (100.0 * last_value / limit_value)::float8 AS used_percent, columns
       FROM used WHERE last_value IS NOT NULL AND limit_value > 0
       ORDER BY used_percent DESC, schema, name LIMIT %s"""
)
# Lag is measured against this server's WAL position: the current one on a primary, the replayed
# one on a standby that feeds cascading replicas.
_REPLICAS_SQL = _marked(
    """SELECT coalesce(nullif(application_name, ''), 'replica'), coalesce(host(client_addr), 'local'),
              pg_wal_lsn_diff(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()
                                   ELSE pg_current_wal_lsn() END, replay_lsn)::float8,
              extract(epoch FROM replay_lag)::float8
       FROM pg_stat_replication"""
)
_STANDBY_SQL = _marked(
    """SELECT greatest(pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()), 0)::float8,
              CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
                   ELSE greatest(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0) END::float8"""
)
_CHECKPOINTS_SQL = {
    # PostgreSQL 17 moved the checkpoint counters from pg_stat_bgwriter to pg_stat_checkpointer.
    True: _marked("SELECT num_timed, num_requested FROM pg_stat_checkpointer"),
    False: _marked("SELECT checkpoints_timed, checkpoints_req FROM pg_stat_bgwriter"),
}
_EXTENSION_SQL = _marked(
    """SELECT n.nspname, array(SELECT attname::text FROM pg_attribute
                                WHERE attrelid = to_regclass(quote_ident(n.nspname) || '.pg_stat_statements')
                                  AND attnum > 0 AND NOT attisdropped)
       FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
       WHERE e.extname = 'pg_stat_statements'"""
)
# Summed per queryid over users and nesting levels; rows whose text carries MARKER are ours.
_STATEMENTS_SQL = _marked(
    """SELECT queryid, min(query), sum(calls)::bigint, sum({total})::float8, sum(rows)::bigint,
              sum(shared_blks_hit)::bigint, sum(shared_blks_read)::bigint
       FROM {view}
       WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
         AND coalesce(query, '') NOT LIKE %s
       GROUP BY queryid"""
)


def _readable(exc: BaseException) -> str:
    """psycopg's text as one sentence, without libpq's severity prefix."""
    lines = [" ".join(line.replace("FATAL:", "").split()) for line in str(exc).splitlines()]
    text = ""
    for line in filter(None, lines):
        text += line if not text else (" " if text[-1] in ".:;?!" else ". ") + line
    return text.removeprefix("connection failed: ") or type(exc).__name__


def postgres_error_message(
    exc: psycopg.Error, *, where: str, timeout: float, url: str, connecting: bool = False
) -> str:
    """An operator-readable sentence for a psycopg error, without the password."""
    text = _readable(exc)
    if isinstance(exc, errors.QueryCanceled):
        reason = f"did not answer a query within {timeout:g} s (statement_timeout): {text}"
    elif isinstance(exc, errors.LockNotAvailable):
        reason = f"held a lock the collector needed for more than {timeout:g} s (lock_timeout): {text}"
    elif isinstance(exc, errors.InsufficientPrivilege):
        reason = f"refused a statistics query for lack of privileges ({text}); GRANT pg_monitor to the user"
    elif "password authentication failed" in text or "no password supplied" in text:
        reason = f"refused the login: {text}. Check the user and password in the URL"
    elif connecting and "timeout expired" in text:
        reason = f"could not be reached within {timeout:g} s ({text})"
    elif connecting:
        reason = f"did not accept the connection: {text}"
    elif exc.sqlstate is None:
        reason = f"dropped the connection: {text}"
    else:
        reason = f"answered with an error: {text}"
    return scrub(f"{where} {reason}", url)


# One connection per target and worker process, kept between collections (see kept.py).
_kept: KeptConnections[psycopg.Connection] = KeptConnections(close=lambda conn: conn.close())


def _version_text(server_version: int) -> str:
    return f"{server_version // 10000}.{server_version % 10000}"


@register
class PostgresCollector(Collector):
    kind = "postgres"
    label = "PostgreSQL"

    @property
    def _where(self) -> str:
        return f"PostgreSQL at {self.target.url_display or 'the configured URL'}"

    def _fail(self, exc: psycopg.Error, *, connecting: bool = False) -> CollectorError:
        message = postgres_error_message(
            exc, where=self._where, timeout=self.timeout, url=self.target.url, connecting=connecting
        )
        return CollectorError(message)

    def _open(self) -> psycopg.Connection:
        """A read-only autocommit connection whose statements, locks and connect are bounded by the timeout."""
        url = self.target.url
        timeout_ms = max(1, round(self.timeout * 1000))
        try:
            params = bounded_conninfo(
                url,
                statement_timeout_ms=timeout_ms,
                lock_timeout_ms=timeout_ms,
                application_name=APPLICATION_NAME,
                extra_options="-c default_transaction_read_only=on",
            )
            # libpq counts whole seconds; rounding up never cuts the configured time short.
            params.update(connect_timeout=max(1, math.ceil(self.timeout)), tcp_user_timeout=timeout_ms)
            params = outbound.psycopg_params(params, what=f"The host of {self._where}")
            conn = psycopg.connect(autocommit=True, **params)
        except psycopg.Error as exc:
            raise self._fail(exc, connecting=True) from exc
        except outbound.OutboundRefused as exc:
            raise CollectorError(str(exc)) from exc
        except OSError as exc:  # the host name does not resolve
            raise CollectorError(f"{self._where} could not be reached ({exc})") from exc
        if conn.info.server_version < MIN_SERVER_VERSION:
            conn.close()
            raise CollectorError(
                f"{self._where} runs PostgreSQL {_version_text(conn.info.server_version)}; "
                "Perfpilot supports PostgreSQL 13 and later"
            )
        return conn

    @contextmanager
    def connect(self) -> Iterator[psycopg.Connection]:
        """A new connection (see _open), closed afterwards; psycopg errors become CollectorErrors."""
        conn = self._open()
        try:
            yield conn
        except psycopg.Error as exc:
            raise self._fail(exc) from exc
        finally:
            conn.close()

    def test_connection(self) -> str:
        with self.connect() as conn:
            conn.execute(_marked("SELECT 1"))
            return f"PostgreSQL {_version_text(conn.info.server_version)}"

    def collect(self) -> CollectResult:
        """Read the server over the connection kept from the previous collection, or a new one."""
        slot, fingerprint = self.target.pk, (self.target.url, self.timeout)
        kept = _kept.take(slot, fingerprint)
        if kept is not None:
            try:
                return self._read_lent(kept, slot, fingerprint)
            except CollectorError:
                if not kept.closed:
                    raise
                # The connection died since the last collection (a server restart, an idle
                # timeout): not the server's state now, so ask once more on a new connection.
        return self._read_lent(self._open(), slot, fingerprint)

    def _read_lent(self, conn: psycopg.Connection, slot, fingerprint) -> CollectResult:
        with _kept.lent(slot, fingerprint, conn):
            try:
                return self._read(conn)
            except psycopg.Error as exc:
                raise self._fail(exc) from exc

    def _read(self, conn: psycopg.Connection) -> CollectResult:
        result = CollectResult()
        database, in_recovery, max_connections, preload = _one(conn, _SERVER_SQL)
        labels = {"database": database}
        add = result.measurements.extend
        add(self._connections(conn, max_connections, result.notes))
        add(self._activity(conn))
        add(self._database_stats(conn, labels))
        add(self._databases(conn))
        add(self._dead_tuples(conn, labels))
        add(self._replication(conn, in_recovery))
        add(self._checkpoints(conn))
        add(self._sequences(conn, labels))
        result.statements = self._statements(conn, database, preload, result.notes)
        return result

    def _connections(self, conn: psycopg.Connection, max_connections: int, notes: list[str]) -> list[Measurement]:
        counts = dict.fromkeys(_CONNECTION_STATES, 0)
        for state, count in conn.execute(_CONNECTIONS_SQL):
            key = re.sub(r"[^a-z0-9]+", "_", state.lower()).strip("_")
            counts[key] = counts.get(key, 0) + count
        if counts.get("unknown"):
            notes.append(
                "The monitoring user cannot see the state of other users' sessions; "
                "GRANT pg_monitor to it for complete activity figures."
            )
        total = sum(counts.values())
        measurements = [Measurement("postgres_connections", float(n), {"state": s}) for s, n in sorted(counts.items())]
        percent = 100.0 * total / max_connections if max_connections else 0.0
        measurements.append(Measurement("postgres_connections_used_percent", percent, unit="%"))
        return measurements

    def _activity(self, conn: psycopg.Connection) -> list[Measurement]:
        longest_query, oldest_transaction, blocked = _one(conn, _ACTIVITY_SQL)
        return [
            Measurement("postgres_longest_query_age_seconds", float(longest_query), unit="s"),
            Measurement("postgres_oldest_transaction_age_seconds", float(oldest_transaction), unit="s"),
            Measurement("postgres_blocked_sessions", float(blocked)),
        ]

    def _database_stats(self, conn: psycopg.Connection, labels: dict[str, str]) -> list[Measurement]:
        row = conn.execute(_DATABASE_STATS_SQL).fetchone()
        if row is None:
            return []
        commits, rollbacks, blks_read, blks_hit, reads, writes, deadlocks, temp_bytes, stats_reset = row
        measurements = [
            Measurement("postgres_commits_per_second", float(commits), labels, COUNTER, "/s"),
            Measurement("postgres_rollbacks_per_second", float(rollbacks), labels, COUNTER, "/s"),
            Measurement("postgres_tuple_reads_per_second", float(reads), labels, COUNTER, "/s"),
            Measurement("postgres_tuple_writes_per_second", float(writes), labels, COUNTER, "/s"),
            Measurement("postgres_deadlocks_per_second", float(deadlocks), labels, COUNTER, "/s"),
            Measurement("postgres_temp_bytes_per_second", float(temp_bytes), labels, COUNTER, "bytes/s"),
        ]
        ratio = self._hit_ratio(labels["database"], int(blks_hit), int(blks_read), stats_reset)
        if ratio is not None:
            measurements.append(Measurement("postgres_cache_hit_ratio_percent", ratio, labels, unit="%"))
        return measurements

    def _hit_ratio(self, database: str, hit: int, read: int, stats_reset: str | None) -> float | None:
        """Hits / block accesses since the previous collection; None without a comparable previous one."""
        current = {"database": database, "hit": hit, "read": read, "stats_reset": stats_reset}
        previous = self.state.get("blocks")
        self.state["blocks"] = current
        if not previous or previous.get("database") != database or previous.get("stats_reset") != stats_reset:
            return None  # first sight, another database, or pg_stat_reset()
        hits, reads = hit - previous["hit"], read - previous["read"]
        if hits < 0 or reads < 0 or hits + reads == 0:
            return None  # counters went back (crash), or no block was accessed: no ratio to speak of
        return 100.0 * hits / (hits + reads)

    def _databases(self, conn: psycopg.Connection) -> list[Measurement]:
        measurements = []
        xid_age = mxid_age = 0
        for name, size, frozen_age, multixact_age in conn.execute(_DATABASES_SQL):
            if size is not None:
                measurements.append(
                    Measurement("postgres_database_size_bytes", float(size), {"database": name}, unit="bytes")
                )
            xid_age = max(xid_age, int(frozen_age or 0))
            mxid_age = max(mxid_age, int(multixact_age or 0))
        measurements.append(
            Measurement("postgres_xid_wraparound_percent", 100.0 * xid_age / WRAPAROUND_LIMIT, unit="%")
        )
        measurements.append(
            Measurement("postgres_mxid_wraparound_percent", 100.0 * mxid_age / WRAPAROUND_LIMIT, unit="%")
        )
        return measurements

    def _dead_tuples(self, conn: psycopg.Connection, labels: dict[str, str]) -> list[Measurement]:
        measurements = []
        for table, dead, live in conn.execute(_DEAD_TUPLES_SQL, [TOP_DEAD_TUPLE_TABLES]):
            table_labels = {**labels, "table": table}
            ratio = 100.0 * dead / (dead + live) if dead + live else 0.0
            measurements.append(Measurement("postgres_table_dead_tuples", float(dead), table_labels))
            measurements.append(Measurement("postgres_table_dead_tuple_ratio_percent", ratio, table_labels, unit="%"))
        return measurements

    def _replication(self, conn: psycopg.Connection, in_recovery: bool) -> list[Measurement]:
        lag_bytes: dict[str, float] = {}
        lag_seconds: dict[str, float] = {}
        for name, client, behind, seconds in conn.execute(_REPLICAS_SQL):
            if behind is None:
                continue  # not streaming yet, or the user may not read replica positions
            # Two replicas under one name keep the worse lag: that is the one to be warned about.
            replica = f"{name}@{client}"
            lag_bytes[replica] = max(lag_bytes.get(replica, 0.0), max(behind, 0.0))
            # replay_lag turns NULL once a caught-up replica has nothing left to replay.
            if seconds is not None or behind <= 0:
                lag_seconds[replica] = max(lag_seconds.get(replica, 0.0), seconds or 0.0)
        measurements = [
            Measurement("postgres_replication_lag_bytes", value, {"replica": replica}, unit="bytes")
            for replica, value in sorted(lag_bytes.items())
        ]
        measurements += [
            Measurement("postgres_replication_lag_seconds", value, {"replica": replica}, unit="s")
            for replica, value in sorted(lag_seconds.items())
        ]
        if in_recovery:
            behind, seconds = _one(conn, _STANDBY_SQL)
            if behind is not None:  # NULL when the standby restores from an archive, not a stream
                measurements.append(Measurement("postgres_replication_lag_bytes", behind, unit="bytes"))
            if seconds is not None:
                measurements.append(Measurement("postgres_replication_lag_seconds", seconds, unit="s"))
        return measurements

    def _checkpoints(self, conn: psycopg.Connection) -> list[Measurement]:
        timed, requested = _one(conn, _CHECKPOINTS_SQL[conn.info.server_version >= 170000])
        return [
            Measurement("postgres_checkpoints_timed_per_second", float(timed), kind=COUNTER, unit="/s"),
            Measurement("postgres_checkpoints_requested_per_second", float(requested), kind=COUNTER, unit="/s"),
        ]

    def _sequences(self, conn: psycopg.Connection, labels: dict[str, str]) -> list[Measurement]:
        return [
            Measurement("postgres_sequence_used_percent", used, {**labels, "sequence": f"{schema}.{name}"}, unit="%")
            for schema, name, *_, used, _columns in conn.execute(SEQUENCES_SQL, [TOP_SEQUENCES])
        ]

    def _statements(
        self, conn: psycopg.Connection, database: str, preload: str | None, notes: list[str]
    ) -> list[StatementCounters] | None:
        preloaded = None if preload is None else "pg_stat_statements" in preload
        installed = conn.execute(_EXTENSION_SQL).fetchone()
        if installed is None:
            steps = f"run CREATE EXTENSION pg_stat_statements; in database “{database}”"
            if not preloaded:
                steps = (
                    "add pg_stat_statements to shared_preload_libraries in postgresql.conf, restart PostgreSQL, "
                    f"then {steps}"
                )
            notes.append(
                f"pg_stat_statements is not installed in database “{database}”, so there are no query "
                f"statistics. To fix it, {steps}."
            )
            return None
        schema, columns = installed
        try:
            rows = conn.execute(_statements_sql(schema, columns), [f"%{MARKER}%"]).fetchall()
        except errors.ObjectNotInPrerequisiteState:
            notes.append(
                f"pg_stat_statements is installed in database “{database}” but not loaded, so there are no "
                "query statistics. To fix it, add pg_stat_statements to shared_preload_libraries in "
                "postgresql.conf and restart PostgreSQL."
            )
            return None
        except errors.InsufficientPrivilege as exc:
            notes.append(
                f"The monitoring user may not read pg_stat_statements in database “{database}” ({_readable(exc)}), "
                "so there are no query statistics. To fix it, GRANT pg_monitor to it."
            )
            return None
        # The sums are cast in SQL, so the values arrive as the Python ints and floats we keep.
        statements = [
            StatementCounters(queryid, database, query or "", calls, total_ms, rows_, hit, read)
            for queryid, query, calls, total_ms, rows_, hit, read in rows
            if queryid is not None
        ]
        if len(statements) < len(rows):
            notes.append(
                "Some queries of other users are hidden from the monitoring user; GRANT pg_monitor to it to see them."
            )
        return statements


def _statements_sql(schema: str, columns: list[str]) -> sql.Composed:
    """pg_stat_statements of the current database summed per queryid, without the collector's own."""
    # Versions 1.8+ (PostgreSQL 13) split total_time into planning and execution; an extension
    # left at an older version after pg_upgrade still has total_time.
    if "total_exec_time" in columns:
        parts = ["total_exec_time", *(["total_plan_time"] if "total_plan_time" in columns else [])]
    else:
        parts = ["total_time"]
    total = sql.SQL(" + ").join(sql.Identifier(part) for part in parts)
    return _STATEMENTS_SQL.format(total=total, view=sql.Identifier(schema, "pg_stat_statements"))


def _one(conn: psycopg.Connection, query: sql.Composable, params: Any = None) -> tuple:
    row = conn.execute(query, params).fetchone()
    if row is None:
        raise CollectorError(f"PostgreSQL returned no row for {query.as_string(conn)[:80]!r}")
    return row
