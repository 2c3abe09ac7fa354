"""The one plug-in registry: discovery, lookups, import failures and freezing."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from core.registry import Registry, RegistryFrozen, UnknownPlugin, registry

ROOT = Path(__file__).resolve().parents[2]
# Every tuner shipped (tests/optimizer/test_tasks.py checks each one's schedule is installed).
BUILTIN_TUNERS = {
    "vacuum",
    "indexes",
    "pgconfig",
    "cache",
    "vectors",
    "sequences",
    "n_plus_one",
    "plan_capture",
    "space",
}


class _Plugin:
    kind = "probe"


def test_every_builtin_plugin_kind_is_registered_once_the_apps_are_ready():
    assert set(registry.all("collectors")) == {"host", "postgres", "redis", "celery", "prometheus", "perfpilot"}
    assert set(registry.all("tuners")) == BUILTIN_TUNERS
    assert set(registry.all("executors")) == {"celery", "gunicorn", "webhook", "shell", "kubernetes", "docker"}
    assert set(registry.all("transports")) == {"slack", "webhook"}
    assert list(registry.all("defaults")) == ["monitoring", "alerts"]  # INSTALLED_APPS order


def test_the_registry_is_frozen_after_start():
    assert registry.frozen
    with pytest.raises(RegistryFrozen):
        registry.register("tuners", "late", _Plugin)
    with pytest.raises(TypeError):
        registry.all("tuners")["late"] = _Plugin  # read-only view


def test_an_unknown_kind_names_the_known_ones():
    with pytest.raises(UnknownPlugin) as caught:
        registry.get("transports", "pager")
    assert "known: slack, webhook" in str(caught.value)


def test_a_kind_registered_twice_is_refused():
    own = Registry(frozen_with_apps=False)
    own.plugin("tuners")(_Plugin)
    own.plugin("tuners")(_Plugin)  # the same class again is harmless (a module imported twice)
    with pytest.raises(ValueError, match="registered twice"):
        own.register("tuners", "probe", object())
    own.freeze()
    with pytest.raises(RegistryFrozen):
        own.register("tuners", "other", _Plugin)


def test_a_plugin_module_that_fails_to_import_hides_no_other_kind(tmp_path):
    """In a fresh process: a broken module is reported by kind, and the package's others register."""
    package = tmp_path / "probe_plugins"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "good.py").write_text(
        textwrap.dedent(
            """
            from core.registry import registry

            @registry.plugin("probes")
            class Good:
                kind = "good"
            """
        )
    )
    (package / "broken.py").write_text("import a_module_that_does_not_exist\n")
    code = textwrap.dedent(
        """
        from core.registry import Registry, UnknownPlugin
        import core.registry

        own = Registry(frozen_with_apps=False)
        core.registry.registry = own
        own.discover("probes", "probe_plugins")
        print(sorted(own.all("probes")))
        try:
            own.get("probes", "broken")
        except UnknownPlugin as exc:
            print(exc.reason)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={"PYTHONPATH": f"{tmp_path}:{ROOT}", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    kinds, reason = result.stdout.strip().splitlines()
    assert kinds == "['good']"
    assert reason == "ModuleNotFoundError: No module named 'a_module_that_does_not_exist'"
