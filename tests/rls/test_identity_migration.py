"""The signed identity's migration (security 0001) and the key installation after ``migrate``,
run by the owner with ``manage.py`` on a clone of the test database, as a DBA would.

Reversing it restores policies that read the plain settings before it removes the functions
and the key table (never an unprotected table, never a policy left calling a missing
function), and ``migrate`` then has no identity to install keys into; applying it again signs
as before. A ``migrate`` that cannot read the master key says so and changes no key.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.conf import settings
from django.db import connections

from keys import crypto
from neonpro.security import identity
from neonpro.security.db import PHI_TABLES
from tests.conftest import OWNER_ROLE, TEST_MASTER_KEY, superuser_dsn
from tests.served import clone_database, drop_database

pytestmark = pytest.mark.django_db
BASE_DIR = Path(__file__).resolve().parents[2]
CLAIM = "neonpro_identity_claim"


@pytest.fixture(scope="module")
def clone(django_db_setup: None, django_db_blocker: Any) -> Iterator[str]:
    template = connections["default"].settings_dict["NAME"]
    name = f"{template}_identity_migration"
    with django_db_blocker.unblock():
        connections.close_all()
        clone_database(superuser_dsn(), template=template, name=name, owner=OWNER_ROLE)
    yield name
    drop_database(superuser_dsn(), name)


def _dsn(database: str) -> str:
    db = settings.DATABASES["default"]
    return f"host={db['HOST'] or '127.0.0.1'} port={db['PORT'] or 5432} user={OWNER_ROLE} dbname={database}"


def _manage(database: str, *args: str, tmp_path: Path, master_key: str | None = TEST_MASTER_KEY) -> Any:
    """``manage.py`` as the owner on ``database``; ``master_key=None``: none configured at all."""
    db = settings.DATABASES["default"]
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "NEONPRO_MASTER_KEY_FILE"}}
    env.update(
        DATABASE_URL=f"postgres://{OWNER_ROLE}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{database}",
        NEONPRO_DATA_DIR=str(tmp_path),  # empty: no master key file either
    )
    env.pop("NEONPRO_MASTER_KEY", None)
    if master_key is not None:
        env["NEONPRO_MASTER_KEY"] = master_key
    done = subprocess.run(
        [sys.executable, str(BASE_DIR / "manage.py"), *args],
        env=env,
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"manage.py {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done


def _state(database: str) -> dict[str, Any]:
    """What the owner sees: the functions, the key table and its keys, what the policies read."""
    with psycopg.connect(_dsn(database)) as conn:
        functions = conn.execute(
            "SELECT to_regprocedure('public.neonpro_identity_claim(text)') IS NOT NULL, "
            "to_regprocedure('public.neonpro_identity_binding()') IS NOT NULL"
        ).fetchone()
        table = conn.execute("SELECT to_regclass('neonpro_identity.signing_key') IS NOT NULL").fetchone()[0]
        keys = dict(conn.execute("SELECT key_id, secret FROM neonpro_identity.signing_key").fetchall()) if table else {}
        tables = conn.execute("SELECT tablename FROM pg_tables WHERE tablename = ANY(%s)", [list(PHI_TABLES)])
        existing = {row[0] for row in tables.fetchall()}
        policies = conn.execute(
            "SELECT tablename, coalesce(qual, '') || ' ' || coalesce(with_check, '') FROM pg_policies "
            "WHERE tablename = ANY(%s)",
            [list(PHI_TABLES)],
        ).fetchall()
    return {
        "tables": existing,
        "functions": functions,
        "key_table": table,
        "keys": {key_id: bytes(secret) for key_id, secret in keys.items()},
        "signed_tables": {t for t, text in policies if CLAIM in text},
        # The plain settings' user id (the planner's hint reads the plain role, never the user).
        "plain_tables": {t for t, text in policies if "current_setting('neonpro.user_id'" in text},
    }


def test_reversing_the_signed_identity_restores_plain_policies_and_reapplying_signs_again(
    clone: str, tmp_path: Path
) -> None:
    before = _state(clone)
    assert before["functions"] == (True, True) and before["keys"]
    assert before["signed_tables"] == set(PHI_TABLES) and not before["plain_tables"]

    reversed_ = _manage(clone, "migrate", "security", "zero", tmp_path=tmp_path)

    after = _state(clone)
    assert after["functions"] == (False, False) and not after["key_table"]
    # Every PHI table left reads the plain settings again; the record history, whose policies
    # read the signed identity from the start (records 0005), was reversed with it, and so was
    # the agent-access table (patients 0008, after the signed identity).
    assert after["tables"] == set(PHI_TABLES) - {"records_medicalrecordrevision", "patients_agentaccess"}
    assert not after["signed_tables"] and after["plain_tables"] == after["tables"]
    # post_migrate found no signed identity to put keys into, and did not try.
    assert "identity signing keys" not in reversed_.stderr

    applied = _manage(clone, "migrate", tmp_path=tmp_path)

    again = _state(clone)
    assert again["functions"] == (True, True)
    assert again["signed_tables"] == set(PHI_TABLES) and not again["plain_tables"]
    assert again["keys"] == before["keys"]  # the same identity keys, derived anew from the master key
    for key_id, secret in again["keys"].items():
        assert secret == crypto.derived_key(purpose="identity", label=identity.LABEL, key_id=key_id)
    installed = ", ".join(map(str, sorted(again["keys"], reverse=True)))
    assert f"identity signing keys installed: {installed}" in applied.stderr


def test_migrate_without_the_master_key_warns_and_leaves_the_installed_keys(clone: str, tmp_path: Path) -> None:
    before = _state(clone)["keys"]
    assert before

    # The system checks refuse a migrate without a usable master key (keys.E001); an operator
    # who skips them still gets the schema, a warning, and the identity keys left as they were.
    done = _manage(clone, "migrate", "--skip-checks", tmp_path=tmp_path, master_key=None)

    assert "identity signing keys not installed (" in done.stderr
    assert "run `manage.py db identity-keys`" in done.stderr
    assert TEST_MASTER_KEY not in done.stdout + done.stderr
    assert _state(clone)["keys"] == before
