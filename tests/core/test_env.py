from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from core.env import envbool, envchoice, envfloat, envint, envlist, envstr, read_or_create_secret


@pytest.mark.parametrize("raw", ["true", "True", "1", "yes", "on"])
def test_envbool_accepts_true_spellings(monkeypatch, raw):
    monkeypatch.setenv("PP_FLAG", raw)
    assert envbool("PP_FLAG", False) is True


@pytest.mark.parametrize("raw", ["false", "0", "no", "off"])
def test_envbool_accepts_false_spellings(monkeypatch, raw):
    monkeypatch.setenv("PP_FLAG", raw)
    assert envbool("PP_FLAG", True) is False


def test_envbool_rejects_anything_else_naming_the_variable(monkeypatch):
    monkeypatch.setenv("PP_FLAG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="PP_FLAG='maybe' is not a boolean"):
        envbool("PP_FLAG", False)


def test_unset_or_empty_variables_fall_back_to_the_default(monkeypatch):
    monkeypatch.delenv("PP_UNSET", raising=False)
    monkeypatch.setenv("PP_EMPTY", "")
    assert envbool("PP_UNSET", True) is True
    assert envint("PP_EMPTY", 7) == 7
    assert envstr("PP_UNSET", "x") == "x"
    assert envlist("PP_EMPTY", ["a"]) == ["a"]


def test_envint_rejects_words_and_out_of_range_values(monkeypatch):
    monkeypatch.setenv("PP_PORT", "eighty")
    with pytest.raises(ImproperlyConfigured, match="PP_PORT='eighty' is not a whole number"):
        envint("PP_PORT", 1)
    monkeypatch.setenv("PP_PORT", "70000")
    with pytest.raises(ImproperlyConfigured, match="above the maximum of 65535"):
        envint("PP_PORT", 1, maximum=65535)
    monkeypatch.setenv("PP_PORT", "0")
    with pytest.raises(ImproperlyConfigured, match="below the minimum of 1"):
        envint("PP_PORT", 1, minimum=1)
    monkeypatch.setenv("PP_PORT", " 8080 ")
    assert envint("PP_PORT", 1, minimum=1, maximum=65535) == 8080


def test_envfloat_rejects_nan_and_words(monkeypatch):
    monkeypatch.setenv("PP_SECONDS", "nan")
    with pytest.raises(ImproperlyConfigured, match="not a finite number"):
        envfloat("PP_SECONDS", 1.0)
    monkeypatch.setenv("PP_SECONDS", "soon")
    with pytest.raises(ImproperlyConfigured, match="PP_SECONDS='soon' is not a finite number"):
        envfloat("PP_SECONDS", 1.0)
    monkeypatch.setenv("PP_SECONDS", "2.5")
    assert envfloat("PP_SECONDS", 1.0) == 2.5


def test_envlist_splits_on_commas_and_drops_blanks(monkeypatch):
    monkeypatch.setenv("PP_HOSTS", "a.example, b.example,,")
    assert envlist("PP_HOSTS", []) == ["a.example", "b.example"]


def test_envchoice_names_the_allowed_values(monkeypatch):
    monkeypatch.setenv("PP_LEVEL", "LOUD")
    with pytest.raises(ImproperlyConfigured, match="must be one of: DEBUG, INFO"):
        envchoice("PP_LEVEL", "INFO", ("DEBUG", "INFO"))


def test_secrets_can_come_from_a_file(monkeypatch, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("s3cr3t\n")
    monkeypatch.setenv("PP_SECRET", "from-env")
    monkeypatch.setenv("PP_SECRET_FILE", str(secret))
    assert envstr("PP_SECRET") == "s3cr3t"


def test_unreadable_secret_file_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("PP_SECRET_FILE", str(tmp_path / "missing"))
    with pytest.raises(ImproperlyConfigured, match=r"PP_SECRET_FILE=.* cannot be read"):
        envstr("PP_SECRET")


def test_generated_secret_is_private_and_stable(tmp_path):
    path = tmp_path / "secrets" / "key"
    first = read_or_create_secret(path)
    assert read_or_create_secret(path) == first
    assert len(first) >= 40
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700


def test_settings_module_rejects_a_bad_value_at_import(tmp_path):
    """A bad variable stops start-up with a message naming it, not a traceback deep in Django."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "PERFPILOT_DEBUG": "sometimes", "PERFPILOT_VAR_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", "import config.settings"], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode != 0
    assert "PERFPILOT_DEBUG='sometimes' is not a boolean" in result.stderr


def test_database_and_redis_urls_override_the_embedded_servers(tmp_path):
    import json
    import os
    import subprocess
    import sys

    env = {
        **os.environ,
        "PERFPILOT_VAR_DIR": str(tmp_path),
        "DATABASE_URL": "postgresql://app:pw@db.internal:5432/perfpilot",
        "REDIS_URL": "redis://cache.internal:6379/2",
    }
    code = (
        "import json, config.settings as s; print(json.dumps([s.USE_EMBEDDED_POSTGRES, s.USE_EMBEDDED_REDIS,"
        " s.DATABASES['default']['HOST'], s.CELERY_BROKER_URL]))"
    )
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert json.loads(result.stdout) == [False, False, "db.internal", "redis://cache.internal:6379/2"]
    assert not (tmp_path / "secrets" / "postgres_password").exists()
