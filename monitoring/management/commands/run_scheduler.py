from __future__ import annotations

import signal
import threading

from django.core.management.base import BaseCommand

from monitoring.services.scheduling import TICK_SECONDS, scheduler_run


class Command(BaseCommand):
    help = (
        "Send the collections of the targets that are due, every second, until SIGTERM or Ctrl-C. "
        "Any number may run at once (for availability); each due collection is sent once."
    )

    def add_arguments(self, parser):
        parser.add_argument("--tick", type=float, default=TICK_SECONDS, help="Longest sleep between looks (s).")

    def handle(self, *args, tick: float, **options):
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        scheduler_run(stop=stop, tick_seconds=tick)
