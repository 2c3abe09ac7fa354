from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from core.embedded import EmbeddedServerError, embedded_servers_from_settings


class Command(BaseCommand):
    help = "Start, stop or show the embedded PostgreSQL and Redis (those not replaced by a URL)."

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["start", "stop", "status"])

    def handle(self, *args, action: str, **options):
        servers = [s for s in embedded_servers_from_settings() if s is not None]
        if not servers:
            self.stdout.write("DATABASE_URL and REDIS_URL are set: no embedded servers are used.")
            return
        for server in servers:
            label = f"{type(server).__name__} on port {server.port}"
            try:
                if action == "start":
                    server.start()
                elif action == "stop":
                    server.stop()
            except EmbeddedServerError as exc:
                raise CommandError(f"{label}: {exc}") from exc
            self.stdout.write(f"{label}: {'running' if server.is_running() else 'stopped'}")
