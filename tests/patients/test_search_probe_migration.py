"""patients 0006 (search probes) forwards, backwards and forwards again, with data.

On a database of its own, as the table owner, the way an operator runs ``migrate``:
PostgreSQL (concurrent index builds, the trigger, the batched fill under FORCE ROW LEVEL
SECURITY) and SQLite (the embedded mode). Lookups find the same rows at every step.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.conf import settings
from psycopg import sql

from tests.conftest import OWNER_ROLE, TEST_MASTER_KEY, superuser_dsn

BASE_DIR = Path(__file__).resolve().parents[2]
FIELDS = ("ssn", "mrn", "email", "phone")

SEED = """
import datetime as dt
from neonpro.security.context import system_context
from patients.models import Patient
with system_context("migration test seed"):
    Patient.objects.bulk_create([
        Patient(full_name=f"P {i}", date_of_birth=dt.date(1980, 1, 1), ssn=f"900-11-{i:04d}", mrn=f"MRN-{i:06d}",
                email=f"p{i}@example.org" if i % 3 else None, phone=f"+1 555 {i:07d}")
        for i in range(40)
    ])
"""

# The blind lookups' SQL needs the probe columns; at 0005 they do not exist, so the lookup
# there is the token range alone, which the whole-column index answers.
LOOKUP = """
import json, uuid
from django.db import connection
from neonpro.security.context import system_context
from patients.models import Patient
from keys.fields import _successor
QUERIES = [("ssn", ["900110007"]), ("mrn", ["mrn000012", "MRN-000013"]), ("email", ["P5@example.org"]),
           ("phone", ["+15550000021", "nope"]), ("ssn", ["900-11-0040"])]
found = []
with system_context("migration test lookups"):
    for field, values in QUERIES:
        if ORM:
            ids = Patient.objects.filter(**{f"{field}__in": values}).values_list("id", flat=True)
        else:
            f = Patient._meta.get_field(field)
            ids = []
            with connection.cursor() as cursor:
                for value in values:
                    for token in f.index_candidates(value):
                        cursor.execute(f"SELECT id FROM patients_patient WHERE {field} >= %s AND {field} < %s",
                                       [token, _successor(token)])
                        ids += [row[0] for row in cursor.fetchall()]
        found.append(sorted(str(uuid.UUID(str(i))) for i in ids))
print(json.dumps(found))
"""

# Written at 0005 the way the code of then wrote (no probe columns): raw SQL here, since
# today's ORM expects them. Only its token matters to a lookup; the envelope is a dummy.
LATE_ROW = """
import os, uuid
from django.db import connection
from django.utils import timezone
from neonpro.security.context import system_context
from patients.models import Patient
envelope = b"\\x01" + os.urandom(40)
ssn = Patient._meta.get_field("ssn").index_candidates("900-11-0040")[0] + envelope
mrn = Patient._meta.get_field("mrn").index_candidates("MRN-LATE")[0] + envelope
with system_context("migration test: a row written at 0005"), connection.cursor() as cursor:
    cursor.execute(
        "INSERT INTO patients_patient (id, full_name, date_of_birth, ssn, mrn, contact_by_email, contact_by_sms, "
        "created_at, updated_at, active) VALUES (%s, %s, %s, %s, %s, false, false, %s, %s, true)",
        [uuid.uuid4(), envelope, envelope, ssn, mrn, timezone.now(), timezone.now()],
    )
"""


def _manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, str(BASE_DIR / "manage.py"), *args],
        env=env,
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def _lookups(env: dict[str, str], *, orm: bool) -> list[list[str]]:
    out = _manage(env, "shell", "-c", f"ORM = {orm}\n{LOOKUP}")
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _env(database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"NEONPRO_MASTER_KEY_FILE", "DATABASE_URL"}}
    env.update(
        DATABASE_URL=database_url,
        NEONPRO_MASTER_KEY=TEST_MASTER_KEY,
        NEONPRO_DB_POOL="False",
        NEONPRO_DB_OWNER_ROLE=OWNER_ROLE,
        DJANGO_DEBUG="False",
        **extra,
    )
    return env


@pytest.fixture
def owner_database() -> Any:
    from neonpro.security.db import create_roles

    name = f"{settings.DATABASES['default']['NAME']}_m0006"
    with psycopg.connect(superuser_dsn(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    with psycopg.connect(superuser_dsn(name), autocommit=True) as conn, conn.cursor() as cursor:
        create_roles(cursor, owner=OWNER_ROLE, app="neonpro_app", database=name)
    db = settings.DATABASES["default"]
    host, port = db["HOST"] or "127.0.0.1", db["PORT"] or 5432
    yield name, f"postgres://{OWNER_ROLE}@{host}:{port}/{name}"
    with psycopg.connect(superuser_dsn(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _catalog(dbname: str) -> dict[str, Any]:
    with psycopg.connect(superuser_dsn(dbname), autocommit=True) as conn:
        indexes = dict(
            conn.execute(
                "SELECT c.relname, x.indisvalid FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid "
                "WHERE x.indrelid = 'patients_patient'::regclass"
            ).fetchall()
        )
        definitions = [
            r[0] for r in conn.execute("SELECT indexdef FROM pg_indexes WHERE tablename = 'patients_patient'")
        ]
        columns = {
            r[0]
            for r in conn.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = 'patients_patient'::regclass AND attnum > 0 "
                "AND NOT attisdropped"
            )
        }
        triggers = {
            r[0] for r in conn.execute("SELECT tgname FROM pg_trigger WHERE tgrelid = 'patients_patient'::regclass")
        }
        (forced,) = conn.execute(
            "SELECT relforcerowsecurity FROM pg_class WHERE oid = 'patients_patient'::regclass"
        ).fetchone()
        stale = 0
        if "ssn_probe" in columns:
            checks = " OR ".join(f"{f}_probe IS DISTINCT FROM substr({f}, 5, 4)" for f in FIELDS)
            (stale,) = conn.execute(f"SELECT count(*) FROM patients_patient WHERE {checks}").fetchone()
    return {
        "indexes": indexes,
        "whole": {f for f in FIELDS if any(d.endswith(f"({f})") for d in definitions)},
        "probed": {f for f in FIELDS if any(d.endswith(f"({f}_probe)") for d in definitions)},
        "columns": columns,
        "triggers": triggers,
        "forced": forced,
        "stale": stale,
    }


def test_0006_forwards_backwards_and_forwards_on_postgresql(owner_database: Any) -> None:
    dbname, url = owner_database
    env = _env(url)
    _manage(env, "migrate", "--noinput", "-v", "0")
    _manage(env, "keys", "init")
    _manage(env, "db", "identity-keys")
    _manage(env, "shell", "-c", SEED)
    fresh = _catalog(dbname)
    assert fresh["probed"] == set(FIELDS) and fresh["whole"] == set()
    assert all(fresh["indexes"].values()) and fresh["forced"] and fresh["stale"] == 0
    assert "patients_patient_search_probes" in fresh["triggers"]
    before = _lookups(env, orm=True)
    assert [len(ids) for ids in before] == [1, 2, 1, 1, 0]

    _manage(env, "migrate", "patients", "0005", "--noinput", "-v", "0")
    back = _catalog(dbname)
    assert back["whole"] == set(FIELDS) and back["probed"] == set()
    assert not {f"{f}_probe" for f in FIELDS} & back["columns"]
    assert "patients_patient_search_probes" not in back["triggers"] and back["forced"]
    assert _lookups(env, orm=False) == before  # the whole-column indexes answer the old lookup

    # A row written at 0005, and the leftover of a concurrent build that failed.
    _manage(env, "shell", "-c", LATE_ROW)
    ssn_index = next(name for name in fresh["indexes"] if name.startswith("patients_patient_ssn_probe_"))
    with psycopg.connect(superuser_dsn(dbname), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(f'CREATE UNIQUE INDEX CONCURRENTLY "{ssn_index}" ON patients_patient (active)')
    assert _catalog(dbname)["indexes"][ssn_index] is False

    _manage(env, "migrate", "patients", "--noinput", "-v", "0")
    again = _catalog(dbname)
    assert again["probed"] == set(FIELDS) and again["whole"] == set()
    assert all(again["indexes"].values()) and again["forced"] and again["stale"] == 0
    after = _lookups(env, orm=True)
    assert after[:4] == before[:4] and len(after[4]) == 1  # the same rows, and the late one


def test_0006_forwards_backwards_and_forwards_on_sqlite(tmp_path: Path) -> None:
    env = _env(f"sqlite:///{tmp_path / 'db.sqlite3'}", NEONPRO_DATA_DIR=str(tmp_path))
    _manage(env, "migrate", "--noinput", "-v", "0")
    _manage(env, "keys", "init")
    _manage(env, "shell", "-c", SEED)
    before = _lookups(env, orm=True)
    assert [len(ids) for ids in before] == [1, 2, 1, 1, 0]

    def indexes() -> list[str]:
        with sqlite3.connect(tmp_path / "db.sqlite3") as db:
            return [r[0] for r in db.execute("SELECT sql FROM sqlite_master WHERE tbl_name = 'patients_patient'")]

    def plan() -> str:
        with sqlite3.connect(tmp_path / "db.sqlite3") as db:
            rows = db.execute(
                'EXPLAIN QUERY PLAN SELECT id FROM patients_patient WHERE "patients_patient"."ssn_probe" IN (?) '
                'AND "patients_patient"."ssn" >= ? AND "patients_patient"."ssn" < ?',
                [b"1234", b"1", b"2"],
            ).fetchall()
        return " ".join(str(r[-1]) for r in rows)

    assert "USING INDEX patients_patient_ssn_probe_" in plan()
    _manage(env, "migrate", "patients", "0005", "--noinput", "-v", "0")
    assert not any("_probe" in (s or "") for s in indexes())
    assert sum(1 for s in indexes() if s and s.startswith("CREATE INDEX") and s.endswith('("ssn")')) == 1
    assert _lookups(env, orm=False) == before
    _manage(env, "migrate", "patients", "--noinput", "-v", "0")
    assert not any(s and s.endswith('("ssn")') for s in indexes())
    assert _lookups(env, orm=True) == before
    assert "USING INDEX patients_patient_ssn_probe_" in plan()
