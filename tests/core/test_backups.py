from __future__ import annotations

import os
import subprocess
from datetime import UTC, datetime

import psycopg
import pytest
from django.core.management import call_command
from django.db import connection

from core.backups import database_backup, postgres_program
from monitoring import storage

pytestmark = pytest.mark.usefixtures("clean_samples")


def _listing(dump) -> str:
    return subprocess.run(
        [str(postgres_program("pg_restore")), "--list", str(dump)], capture_output=True, text=True, check=True
    ).stdout


def _admin_conninfo(dbname: str) -> str:
    db = connection.settings_dict
    return psycopg.conninfo.make_conninfo(
        host=db["HOST"], port=db["PORT"], user=db["USER"], password=db["PASSWORD"], dbname=dbname
    )


def _write_a_sample() -> int:
    (series_id,) = storage.series_resolve(target_id=None, specs=[storage.SeriesSpec("backup_probe", {})])
    storage.samples_write([(series_id, datetime.now(UTC), 7.0)])
    return series_id


def test_a_backup_restores_into_an_empty_database_with_series_but_without_raw_samples(tmp_path):
    _write_a_sample()
    result = database_backup(directory=tmp_path)
    assert result.dump_path.exists() and result.size_bytes > 0
    assert oct(result.dump_path.stat().st_mode & 0o777) == "0o600"
    restored = "test_perfpilot_restore"
    with psycopg.connect(_admin_conninfo("postgres"), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{restored}"')
        admin.execute(f'CREATE DATABASE "{restored}"')
    try:
        db = connection.settings_dict
        subprocess.run(
            [
                str(postgres_program("pg_restore")),
                "--no-owner",
                f"--host={db['HOST']}",
                f"--port={db['PORT']}",
                f"--username={db['USER']}",
                f"--dbname={restored}",
                str(result.dump_path),
            ],
            env={**os.environ, "PGPASSWORD": db["PASSWORD"]},
            capture_output=True,
            text=True,
            check=True,
        )
        with psycopg.connect(_admin_conninfo(restored)) as conn:
            assert conn.execute("SELECT count(*) FROM monitoring_series WHERE metric = 'backup_probe'").fetchone() == (
                1,
            )
            assert conn.execute("SELECT count(*) FROM monitoring_sample").fetchone() == (0,)
    finally:
        with psycopg.connect(_admin_conninfo("postgres"), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{restored}"')


def test_raw_samples_are_in_the_backup_only_when_asked_for(tmp_path):
    _write_a_sample()
    without = database_backup(directory=tmp_path / "without")
    with_raw = database_backup(directory=tmp_path / "with", include_raw_samples=True)
    partition_data = [line for line in _listing(with_raw.dump_path).splitlines() if "TABLE DATA" in line]
    assert any("monitoring_sample_p" in line for line in partition_data)
    assert not any(
        "monitoring_sample_p" in line for line in _listing(without.dump_path).splitlines() if "TABLE DATA" in line
    )


def test_the_command_says_where_the_backup_is_and_how_to_restore_it(tmp_path, capsys):
    call_command("backup_database", "--dir", str(tmp_path))
    out = capsys.readouterr().out
    dumps = list(tmp_path.glob("perfpilot-*.dump"))
    assert len(dumps) == 1
    assert str(dumps[0]) in out and "pg_restore" in out
