"""The server refuses to start as a database role that would bypass row-level security."""

from __future__ import annotations

import os
import subprocess
import sys
from io import StringIO
from pathlib import Path
from typing import Any

import psycopg
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


# -- roles that look harmless but are not: membership, extra privileges, role attributes -----


@pytest.fixture
def make_role(request: pytest.FixtureRequest) -> Any:
    """Create throw-away login roles (cluster-wide) for one test; dropped afterwards."""
    from psycopg import sql

    from tests.conftest import superuser_dsn

    dbname = connection.settings_dict["NAME"]
    created: list[str] = []

    def make(*, attributes: str = "LOGIN", member_of: tuple[str, ...] = (), grants: tuple[str, ...] = ()) -> str:
        name = f"np_role_test_{len(created)}_{os.getpid()}"
        with psycopg.connect(superuser_dsn(dbname), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))
            conn.execute(sql.SQL(f"CREATE ROLE {{}} {attributes}").format(sql.Identifier(name)))
            for role in member_of:
                conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(role), sql.Identifier(name)))
            for grant in grants:
                conn.execute(sql.SQL(grant).format(role=sql.Identifier(name)))
        created.append(name)
        return name

    yield make
    with psycopg.connect(superuser_dsn(dbname), autocommit=True) as conn:
        for name in reversed(created):
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def _problems_as(role: str) -> list[str]:
    from neonpro.security.db import role_problems

    dbname = connection.settings_dict["NAME"]
    with psycopg.connect(f"host=127.0.0.1 port=5432 user={role} dbname={dbname}") as conn, conn.cursor() as cursor:
        return role_problems(cursor)


def test_a_member_of_the_owner_role_can_switch_rls_off_and_is_refused(make_role: Any) -> None:
    member = make_role(member_of=(OWNER_ROLE,))
    dbname = connection.settings_dict["NAME"]
    # The attack: SET ROLE to the owner, then switch row-level security off (rolled back here).
    with psycopg.connect(f"host=127.0.0.1 port=5432 user={member} dbname={dbname}") as conn:
        conn.execute(f'SET ROLE "{OWNER_ROLE}"')
        conn.execute("ALTER TABLE patients_patient NO FORCE ROW LEVEL SECURITY")
        conn.rollback()

    problems = _problems_as(member)

    assert any(f"can act as {OWNER_ROLE}, which owns PHI tables" in p for p in problems), problems


def test_membership_through_a_noinherit_chain_still_counts(make_role: Any) -> None:
    middle = make_role(attributes="LOGIN NOINHERIT", member_of=(OWNER_ROLE,))
    outer = make_role(attributes="LOGIN NOINHERIT", member_of=(middle,))

    assert any(f"can act as {OWNER_ROLE}" in p for p in _problems_as(outer))


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        ({"attributes": "LOGIN CREATEROLE"}, "has CREATEROLE"),
        ({"attributes": "LOGIN REPLICATION"}, "has REPLICATION"),
        ({"grants": ("GRANT TRUNCATE ON patients_patient TO {role}",)}, "TRUNCATE on patients_patient"),
        ({"grants": ("GRANT UPDATE, DELETE ON audit_auditevent TO {role}",)}, "UPDATE/DELETE on audit_auditevent"),
        ({"grants": ("GRANT TRIGGER ON records_medicalrecord TO {role}",)}, "TRIGGER on records_medicalrecord"),
        ({"grants": ("GRANT CREATE ON SCHEMA public TO {role}",)}, "may CREATE objects in schema public"),
        ({"grants": ("GRANT USAGE ON SCHEMA neonpro_identity TO {role}",)}, "may use schema neonpro_identity"),
    ],
)
def test_privileges_beyond_dml_are_refused(make_role: Any, setup: dict[str, Any], reason: str) -> None:
    role = make_role(member_of=(APP_ROLE,), **setup)

    problems = _problems_as(role)

    assert any(reason in p for p in problems), problems


def test_bypassrls_or_superuser_reached_through_membership_is_refused(make_role: Any) -> None:
    bypass = make_role(attributes="NOLOGIN BYPASSRLS")
    role = make_role(member_of=(APP_ROLE, bypass))

    assert any(f"can become {bypass}" in p and "BYPASSRLS" in p for p in _problems_as(role))


def test_the_application_role_itself_has_no_problem() -> None:
    assert _problems_as(APP_ROLE) == []


def test_the_deploy_check_refuses_a_member_of_the_owner(make_role: Any, tmp_path: Path) -> None:
    member = make_role(member_of=(OWNER_ROLE,))

    result = _deploy_check(member, tmp_path)

    assert result.returncode != 0
    assert "security.E001" in result.stderr and f"can act as {OWNER_ROLE}" in result.stderr


@pytest.mark.parametrize(
    "predefined",
    [
        "pg_execute_server_program",
        "pg_read_server_files",
        "pg_write_server_files",
        "pg_read_all_data",
        "pg_write_all_data",
        "pg_monitor",
        "pg_signal_backend",
    ],
)
def test_membership_in_a_predefined_role_that_reaches_past_rls_is_refused(make_role: Any, predefined: str) -> None:
    role = make_role(member_of=(APP_ROLE, predefined))

    problems = _problems_as(role)

    assert any(f"can act as {predefined}" in p for p in problems), problems
