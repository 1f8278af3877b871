"""Production settings pass Django's deploy checks, and bad configurations refuse to start.

Each case runs `manage.py` in a subprocess, because settings are read once per process.
"""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parents[2]
MANAGE = str(BASE_DIR / "manage.py")
# Variables from the test run that must not leak into the configuration under test.
_STRIPPED_ENV = (
    "DATABASE_URL",
    "REDIS_URL",
    "CELERY_BROKER_URL",
    "NEONPRO_ENV",
    "NEONPRO_MASTER_KEY",
    "NEONPRO_MASTER_KEY_FILE",
    "DJANGO_SECRET_KEY",
    "DJANGO_SECRET_KEY_FILE",
    "DJANGO_DEBUG",
    "DJANGO_ALLOWED_HOSTS",
    "DJANGO_SECURE_SSL_REDIRECT",
    "DJANGO_BEHIND_PROXY",
)


def _manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in _STRIPPED_ENV}
    clean["DJANGO_SETTINGS_MODULE"] = "neonpro.settings"
    clean.update(env)
    return subprocess.run(
        [sys.executable, MANAGE, *args], env=clean, cwd=BASE_DIR, capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def production_env(tmp_path: Path) -> dict[str, str]:
    return {
        "NEONPRO_ENV": "production",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(64),
        "DJANGO_ALLOWED_HOSTS": "records.example.org",
        "NEONPRO_DATA_DIR": str(tmp_path),
        "NEONPRO_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
    }


def test_production_settings_pass_the_deploy_check(production_env: dict[str, str]) -> None:
    result = _manage("check", "--deploy", "--fail-level", "WARNING", env=production_env)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_production_without_secret_key_refuses_to_start(production_env: dict[str, str]) -> None:
    del production_env["DJANGO_SECRET_KEY"]

    result = _manage("check", env=production_env)

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "DJANGO_SECRET_KEY" in result.stderr


def test_production_refuses_a_weak_secret_key(production_env: dict[str, str]) -> None:
    production_env["DJANGO_SECRET_KEY"] = "django-insecure-" + "a" * 50

    result = _manage("check", env=production_env)

    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr


def test_production_refuses_debug(production_env: dict[str, str]) -> None:
    production_env["DJANGO_DEBUG"] = "True"

    result = _manage("check", env=production_env)

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "DJANGO_DEBUG" in result.stderr


def test_debug_flag_must_be_a_boolean(tmp_path: Path) -> None:
    result = _manage("check", env={"NEONPRO_DATA_DIR": str(tmp_path), "DJANGO_DEBUG": "maybe"})

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "DJANGO_DEBUG must be True or False" in result.stderr


def test_embedded_default_without_master_key_fails_keys_check(tmp_path: Path) -> None:
    result = _manage("check", env={"NEONPRO_DATA_DIR": str(tmp_path)})

    assert result.returncode != 0
    assert "(keys.E001)" in result.stderr
    hint = next(line for line in result.stderr.splitlines() if line.strip().startswith("HINT:"))
    assert "NEONPRO_MASTER_KEY" in hint


def _world_readable_key_file(path: Path) -> Path:
    path.write_text(base64.b64encode(os.urandom(32)).decode() + "\n")
    path.chmod(0o644)
    return path


def test_world_readable_default_key_file_fails_keys_check(tmp_path: Path) -> None:
    _world_readable_key_file(tmp_path / "master.key")

    result = _manage("check", env={"NEONPRO_DATA_DIR": str(tmp_path)})

    assert result.returncode != 0
    assert "(keys.E001)" in result.stderr
    assert "0644" in result.stderr


def test_world_readable_configured_key_file_fails_keys_check(tmp_path: Path) -> None:
    key_file = _world_readable_key_file(tmp_path / "kek.b64")

    result = _manage("check", env={"NEONPRO_DATA_DIR": str(tmp_path), "NEONPRO_MASTER_KEY_FILE": str(key_file)})

    assert result.returncode != 0
    assert "(keys.E001)" in result.stderr
