from __future__ import annotations

import shutil
import sys
import time
import urllib.request

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connections

from core.bootstrap import bootstrap
from core.embedded import EmbeddedServerError, embedded_servers_from_settings
from core.supervisor import ChildSpec, ServerSpec, Supervisor, gunicorn_command

LOCAL_BIND_HOSTS = ("127.0.0.1", "0.0.0.0", "")  # noqa: S104 (names shown as localhost, not a bind)


class Command(BaseCommand):
    help = (
        "Start the whole control plane: embedded servers, web, Celery worker, beat and the collection scheduler. "
        "Ctrl-C stops it."
    )

    def handle(self, *args, **options):
        say = self.stdout.write
        postgres, redis_server = embedded_servers_from_settings()
        try:
            if postgres is not None:
                say(f"starting embedded PostgreSQL on 127.0.0.1:{postgres.port} (data in {postgres.data})…")
                postgres.start()
            if redis_server is not None:
                say(f"starting embedded Redis on 127.0.0.1:{redis_server.port} (data in {redis_server.root})…")
                redis_server.start()
            bootstrap(write=say)
        except EmbeddedServerError as exc:
            self._stop_servers(postgres, redis_server)
            raise CommandError(str(exc)) from exc
        connections.close_all()

        supervisor = Supervisor(
            self._child_specs(), servers=self._server_specs(postgres, redis_server), out=self.stdout._out
        )
        try:
            code = supervisor.run(on_started=lambda: self._announce(supervisor))
        finally:
            self._stop_servers(postgres, redis_server)
        say("Perfpilot stopped.")
        if code:
            sys.exit(code)

    def _child_specs(self) -> list[ChildSpec]:
        python = sys.executable
        metrics_dir = settings.VAR_DIR / "run" / "prometheus"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        return [
            ChildSpec(
                "web",
                gunicorn_command(bind=settings.WEB_BIND),
                env={"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)},
            ),
            ChildSpec(
                "worker",
                [
                    python,
                    "-m",
                    "celery",
                    "-A",
                    "config",
                    "worker",
                    "--loglevel",
                    settings.LOG_LEVEL,
                    "--queues",
                    ",".join(settings.TASK_QUEUES),
                    "--concurrency",
                    str(settings.WORKER_CONCURRENCY),
                    "--hostname",
                    "perfpilot@%h",
                ],
            ),
            ChildSpec(
                "beat",
                [python, "-m", "celery", "-A", "config", "beat", "--loglevel", settings.LOG_LEVEL, "--pidfile="],
            ),
            # Sends the targets' collections (monitoring/services/scheduling.py); more may run elsewhere.
            ChildSpec("scheduler", [python, str(settings.BASE_DIR / "manage.py"), "run_scheduler"]),
        ]

    def _server_specs(self, postgres, redis_server) -> list[ServerSpec]:
        """The embedded servers the supervisor restarts when they die or are stopped."""
        if not settings.EMBEDDED_RESTART:
            return []
        named = (("embedded PostgreSQL", postgres), ("embedded Redis", redis_server))
        return [ServerSpec(name, server.is_running, server.start) for name, server in named if server is not None]

    def _announce(self, supervisor: Supervisor) -> None:
        host, _, port = settings.WEB_BIND.rpartition(":")
        shown_host = "localhost" if host in LOCAL_BIND_HOSTS else host
        url = f"http://{shown_host}:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not supervisor.stopping.is_set():
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=2):  # noqa: S310 (our own http URL)
                    supervisor.say("supervisor", f"Perfpilot is up: open {url}/ (Ctrl-C stops everything)")
                    return
            except OSError:
                time.sleep(0.5)

    def _stop_servers(self, postgres, redis_server) -> None:
        for server in (redis_server, postgres):
            if server is None:
                continue
            try:
                self.stdout.write(f"stopping embedded {type(server).__name__.removeprefix('Embedded')}…")
                server.stop()
            except EmbeddedServerError as exc:
                self.stderr.write(str(exc))
