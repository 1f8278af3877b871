"""The agents' settings refuse what would fail later, at start-up (a subprocess: settings load once)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parents[2]
KEEP = ("PATH", "HOME", "LANG", "COVERAGE_PROCESS_START", "COVERAGE_FILE", "PYTHONPATH", "VIRTUAL_ENV")


def _check(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k in KEEP or k.startswith("COV")}
    clean.update(DJANGO_SETTINGS_MODULE="neonpro.settings", NEONPRO_DATA_DIR=str(tmp_path), **env)
    # `diffsettings` needs no database, no master key and no system check: only the settings.
    return subprocess.run(
        [sys.executable, str(BASE_DIR / "manage.py"), "diffsettings", "--all"],
        env=clean,
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"NEONPRO_TRUSTED_PROXIES": "10.0.0.1,nginx.internal"}, "NEONPRO_TRUSTED_PROXIES: 'nginx.internal' is not"),
        ({"NEONPRO_TRUSTED_PROXIES": "unix:/run/web.sock"}, "is not an address, network or unix"),
        ({"NEONPRO_API_RATE_AGENT": "fast"}, "NEONPRO_API_RATE_AGENT must look like 600/min (or be off), not 'fast'"),
        ({"NEONPRO_API_RATE_USER": "0/min"}, "NEONPRO_API_RATE_USER must look like 600/min"),
    ],
)
def test_bad_agent_settings_refuse_to_start(tmp_path: Path, env: dict[str, str], message: str) -> None:
    done = _check(tmp_path, **env)
    assert done.returncode != 0 and "ImproperlyConfigured" in done.stderr and message in done.stderr


def test_good_agent_settings_are_read(tmp_path: Path) -> None:
    done = _check(
        tmp_path,
        NEONPRO_TRUSTED_PROXIES="10.0.0.1, 192.168.10.0/24,::1,unix",
        NEONPRO_API_RATE_AGENT="30/s",
        NEONPRO_API_RATE_USER="off",
        NEONPRO_API_MAX_BODY_BYTES="2048",
    )
    assert done.returncode == 0, done.stderr
    assert "NEONPRO_TRUSTED_PROXIES = ['10.0.0.1', '192.168.10.0/24', '::1', 'unix']" in done.stdout
    assert "NEONPRO_API_RATE_AGENT = '30/s'" in done.stdout and "NEONPRO_API_RATE_USER = 'off'" in done.stdout
    assert "NEONPRO_API_MAX_BODY_BYTES = 2048" in done.stdout
