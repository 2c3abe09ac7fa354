from __future__ import annotations

from django.core.management.base import BaseCommand

from monitoring.services.retention import retention_run


class Command(BaseCommand):
    help = "Drop raw sample partitions and delete rollups older than their retention, and say what went."

    def handle(self, *args, **options):
        report = retention_run()
        self.stdout.write(f"Raw samples before {report.raw_cutoff:%Y-%m-%d %H:%M} UTC:")
        if report.partitions_dropped:
            self.stdout.write(f"  dropped {len(report.partitions_dropped)} day partition(s):")
            for name in report.partitions_dropped:
                self.stdout.write(f"    {name}")
        else:
            self.stdout.write("  no day partition was old enough to drop")
        for name in report.partitions_waiting_for_rollup:
            self.stdout.write(f"  kept {name}: not rolled up yet (is the rollup task running?)")
        for name in report.partitions_busy:
            self.stderr.write(f"  kept {name}: it was locked by another session; run again later")
        self.stdout.write(
            f"1-minute rollups before {report.cutoff_1m:%Y-%m-%d %H:%M} UTC: deleted {report.rollup_1m_deleted} rows"
        )
        self.stdout.write(
            f"1-hour rollups before {report.cutoff_1h:%Y-%m-%d %H:%M} UTC: deleted {report.rollup_1h_deleted} rows"
        )
        self.stdout.write(f"Done in {report.duration_ms:.0f} ms.")
