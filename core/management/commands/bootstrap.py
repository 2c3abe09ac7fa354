from __future__ import annotations

from django.core.management.base import BaseCommand

from core.bootstrap import bootstrap


class Command(BaseCommand):
    help = "Migrate, collect static files, install default schedules and create the first account."

    def add_arguments(self, parser):
        parser.add_argument("--no-static", action="store_true", help="Skip collectstatic.")

    def handle(self, *args, no_static: bool = False, **options):
        bootstrap(write=self.stdout.write, collect_static=not no_static)
