"""First-start and every-start work shared by `make run` and the compose `web` service."""

from __future__ import annotations

from django.core.management import call_command

from config.services import operator_bootstrap, schedule_sync_defaults


def bootstrap(*, write, collect_static: bool = True) -> None:
    """Migrate, collect static files, install default schedules and the first account."""
    write("applying database migrations…")
    call_command("migrate", interactive=False, verbosity=0)
    if collect_static:
        call_command("collectstatic", interactive=False, verbosity=0)
    created = schedule_sync_defaults()
    if created:
        write(f"installed default schedules: {', '.join(created)}")
    from monitoring.services.targets import targets_register_builtin

    registered = targets_register_builtin()
    if registered:
        write(f"registered the control plane's own targets: {', '.join(registered)}")
    from alerts.services.defaults import rules_install_defaults

    installed = rules_install_defaults()
    if installed:
        write(f"installed the default alert rules: {len(installed)} rules")
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
