from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from monitoring.models import Target
from monitoring.services.collection import collect_target


class Command(BaseCommand):
    help = "Collect every enabled target once (or one, by name or id) and print what was stored."

    def add_arguments(self, parser):
        parser.add_argument("target", nargs="?", help="Target name or id; all enabled targets when left out.")

    def handle(self, *args, target: str | None = None, **options):
        targets = Target.objects.filter(enabled=True).order_by("name")
        if target:
            targets = Target.objects.filter(pk=int(target)) if target.isdigit() else Target.objects.filter(name=target)
            if not targets.exists():
                raise CommandError(f"No target named {target!r}.")
        failures = 0
        for item in targets:
            outcome = collect_target(target=item)
            if outcome.skipped:
                self.stdout.write(f"{item.name}: skipped (another collection is running)")
            elif outcome.ok:
                line = f"{item.name}: stored {outcome.samples} samples"
                if outcome.statements:
                    line += f" and {outcome.statements} query snapshots"
                line += f" in {outcome.duration_ms:.0f} ms"
                if outcome.notes:
                    line += f" (note: {'; '.join(outcome.notes)})"
                self.stdout.write(line)
            else:
                failures += 1
                self.stdout.write(f"{item.name}: DOWN: {outcome.error}")
        if failures:
            raise CommandError(f"{failures} target(s) could not be collected.")
