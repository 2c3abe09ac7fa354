from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from core.backups import BackupError, database_backup


class Command(BaseCommand):
    help = "Dump Perfpilot's database with pg_dump (custom format, for pg_restore), with its secrets beside it."

    def add_arguments(self, parser):
        parser.add_argument("--dir", default=None, help="Where to write the backup (default: var/backups).")
        parser.add_argument(
            "--include-raw-samples", action="store_true", help="Also dump raw samples (the rollups are always kept)."
        )

    def handle(self, *args, dir: str | None, include_raw_samples: bool, **options):
        directory = Path(dir) if dir else settings.VAR_DIR / "backups"
        try:
            result = database_backup(directory=directory, include_raw_samples=include_raw_samples)
        except BackupError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"Wrote {result.dump_path} ({result.size_bytes / 1e6:.1f} MB) in {result.seconds:.1f} s.")
        if result.secrets_path is not None:
            self.stdout.write(
                f"Copied the generated SECRET_KEY to {result.secrets_path}: keep it with the dump, it decrypts "
                "the stored target passwords."
            )
        self.stdout.write(f"Restore into an empty database with: pg_restore --no-owner --dbname=URL {result.dump_path}")
