"""The server refuses to start as a database role that would bypass row-level security."""

from __future__ import annotations

import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection

from neonpro.security.checks import check_runtime_role
from tests.conftest import _ADMIN_USER, APP_ROLE, OWNER_ROLE, TEST_MASTER_KEY

pytestmark = pytest.mark.django_db
BASE_DIR = Path(__file__).resolve().parents[2]


def test_the_application_role_may_serve() -> None:
    assert check_runtime_role(databases=["default"]) == []
    out = StringIO()
    call_command("db", "check", stdout=out)
    assert "This role may serve requests" in out.getvalue()
    assert "patients_patient" in out.getvalue() and "forced=True" in out.getvalue()


def _deploy_check(role: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    settings = connection.settings_dict
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL"}}
    host, port = settings["HOST"] or "127.0.0.1", settings["PORT"] or 5432
    env.update(
        DATABASE_URL=f"postgres://{role}@{host}:{port}/{settings['NAME']}",
        NEONPRO_MASTER_KEY=TEST_MASTER_KEY,
        NEONPRO_DATA_DIR=str(tmp_path),
    )
    return subprocess.run(
        [
            sys.executable,
            str(BASE_DIR / "manage.py"),
            "check",
            "--deploy",
            "--database",
            "default",
            "--fail-level",
            "ERROR",
        ],
        env=env,
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(("role", "reason"), [("owner", "owns PHI tables"), ("superuser", "is a superuser")])
def test_owner_and_superuser_roles_are_refused(role: str, reason: str, tmp_path: Path) -> None:
    name = OWNER_ROLE if role == "owner" else _ADMIN_USER["user"]
    result = _deploy_check(name, tmp_path)
    assert result.returncode != 0
    assert "security.E001" in result.stderr and reason in result.stderr


def test_the_application_role_passes_the_deploy_check(tmp_path: Path) -> None:
    result = _deploy_check(APP_ROLE, tmp_path)
    assert "security.E001" not in result.stderr, result.stderr
    assert result.returncode == 0, result.stderr
