"""Create the extensions Perfpilot's own database uses, where the role is allowed to.

The embedded server creates them already; this covers external databases (compose, managed
PostgreSQL). Without the privilege the migration goes on and says so: monitoring reports a
missing pg_stat_statements plainly instead of failing.
"""

from __future__ import annotations

import logging

from django.db import DatabaseError, migrations, transaction

logger = logging.getLogger(__name__)
EXTENSIONS = ("vector", "pg_stat_statements")


def create_extensions(apps, schema_editor):
    for name in EXTENSIONS:
        try:
            with transaction.atomic(using=schema_editor.connection.alias):
                schema_editor.execute(f'CREATE EXTENSION IF NOT EXISTS "{name}"')
        except DatabaseError as exc:
            logger.warning("extension %s was not created (%s); ask a superuser to create it", name, exc)


class Migration(migrations.Migration):
    dependencies = [("config", "0001_initial")]
    operations = [migrations.RunPython(create_extensions, migrations.RunPython.noop)]
