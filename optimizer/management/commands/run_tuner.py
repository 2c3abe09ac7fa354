"""`manage.py run_tuner KIND TARGET [--dry-run] [--param name=value ...]`: run one tuner now, in this process."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from core.errors import InvalidInput
from monitoring.models import Target
from optimizer.models import OptimizationRun
from optimizer.services.runs import run_create, run_execute


class Command(BaseCommand):
    help = "Run a tuner on a target now and print the run (statements, evidence, error)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("kind", help="vacuum, indexes, pgconfig, cache or vectors")
        parser.add_argument("target", help="target name")
        parser.add_argument("--dry-run", action="store_true", help="record what would run, change nothing")
        parser.add_argument("--param", action="append", default=[], help="name=value (value as JSON when it parses)")

    def handle(self, *args, **options) -> None:
        target = Target.objects.filter(name=options["target"]).first()
        if target is None:
            raise CommandError(f"No target named {options['target']!r}.")
        params = {}
        for item in options["param"]:
            name, sep, value = item.partition("=")
            if not sep:
                raise CommandError(f"--param takes name=value, not {item!r}.")
            try:
                params[name] = json.loads(value)
            except json.JSONDecodeError:
                params[name] = value
        try:
            run = run_create(
                tuner=options["kind"],
                target=target,
                trigger=OptimizationRun.Trigger.OPERATOR,
                actor=None,
                dry_run=options["dry_run"],
                params=params,
            )
        except InvalidInput as exc:
            raise CommandError(str(exc)) from exc
        run = run_execute(run_id=run.id)
        self.stdout.write(f"run {run.id}: {run.tuner} on {run.target_name}: {run.status}")
        for statement in run.statements:
            note = "  (dry run)" if statement.get("dry_run") else ""
            self.stdout.write(f"  {statement['statement']}{note}")
        if run.summary:
            self.stdout.write(run.summary)
        if run.error:
            raise CommandError(run.error)
