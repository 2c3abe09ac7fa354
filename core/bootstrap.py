"""First-start and every-start work shared by `make run` and the compose `web` service."""

from __future__ import annotations

from django.core.management import call_command

from core.registry import registry
from core.services import operator_bootstrap, schedule_sync_defaults


def bootstrap(*, write, collect_static: bool = True) -> None:
    """Migrate, collect static files, install default schedules and the first account."""
    write("applying database migrations…")
    call_command("migrate", interactive=False, verbosity=0)
    if collect_static:
        call_command("collectstatic", interactive=False, verbosity=0)
    created = schedule_sync_defaults()
    if created:
        write(f"installed default schedules: {', '.join(created)}")
    # Each app installs its own defaults (built-in targets, default alert rules), registered in
    # its AppConfig, in the order of INSTALLED_APPS; each returns what it did, for the log.
    for install_defaults in registry.all("defaults").values():
        for line in install_defaults():
            write(line)
    result = operator_bootstrap()
    if result.created and result.generated_password:
        write("")
        write("  First start: an account was created for you (admin role). Save this password now;")
        write("  it is shown only once. Change it in Settings → Django admin when you like.")
        write(f"    username: {result.username}")
        write(f"    password: {result.generated_password}")
        write("")
    elif result.created:
        write(f"created the account {result.username!r} with the password from PERFPILOT_OPERATOR_PASSWORD")
