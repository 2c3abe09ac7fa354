from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from scaling.models import ScaledService, ScalingDecision
from scaling.services.evaluation import ServiceBusy, scaling_tick, service_evaluate


class Command(BaseCommand):
    help = "Evaluate every enabled scaled service once, as beat does (or one by name, even if disabled: a dry run)."

    def add_arguments(self, parser):
        parser.add_argument("service", nargs="?", help="Service name; all enabled, unpaused services when left out.")

    def handle(self, *args, service: str | None = None, **options):
        if service is None:
            result = scaling_tick()
            self.stdout.write(
                f"evaluated {result.evaluated} service(s) in {result.duration_ms:.0f} ms: {result.scaled} scaled, "
                f"{result.dry_run} dry run, {result.failed} failed, {result.skipped_locked} skipped (locked)"
            )
            if result.failed:
                raise CommandError(f"{result.failed} service(s) failed; see their decisions.")
            return
        found = ScaledService.objects.filter(name=service).first()
        if found is None:
            raise CommandError(f"No scaled service named {service!r}.")
        try:
            decision = service_evaluate(service=found, trigger=ScalingDecision.Trigger.MANUAL)
        except ServiceBusy as exc:
            raise CommandError(str(exc)) from exc
        for step in decision.explanation:
            self.stdout.write(f"  {step}")
        self.stdout.write(f"{found.name}: {decision.get_result_display()}")
        if decision.result == ScalingDecision.Result.FAILED:
            raise CommandError(decision.error)
