"""The identity row-level security reads cannot be forged with SQL (neonpro/security/identity.py).

The attacker here is SQL injection: arbitrary SQL as the application role, inside or
outside a request's transaction. Before the signed identity, ``set_config('neonpro.role',
'system', true)`` gave it every row; now only a token signed for the very transaction, with
a key the application role cannot read, gives any identity at all.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import subprocess
import sys
import uuid
from io import StringIO
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction

from keys import crypto
from keys.keyring import keyring
from keys.models import DataKey
from keys.rotation import rotate_data_key
from neonpro.security import identity
from neonpro.security.context import SYSTEM, Identity, acting_as, system_context
from neonpro.security.db import PHI_TABLES
from neonpro.security.identity import Binding, IdentityKeyMissing
from patients.models import Patient
from records.models import MedicalRecord
from tests.conftest import APP_ROLE, OWNER_ROLE, TEST_MASTER_KEY, in_thread

pytestmark = pytest.mark.django_db
BASE_DIR = Path(__file__).resolve().parents[2]
CLAIMS = ("role", "user_id", "patient_id", "scopes")


def _one(sql: str, params: list[Any] | None = None) -> Any:
    with connection.cursor() as cursor:
        cursor.execute(sql, params or [])
        return cursor.fetchone()[0]


def _visible() -> dict[str, int]:
    return {table: _one(f"SELECT count(*) FROM {table}") for table in PHI_TABLES}


def _claims() -> dict[str, Any]:
    return {claim: _one("SELECT neonpro_identity_claim(%s)", [claim]) for claim in CLAIMS}


def _set_token(token: str) -> None:
    _one("SELECT set_config('neonpro.identity', %s, true)", [token])


def _valid_token(who: Identity) -> str:
    with connection.cursor() as cursor:
        return identity.token(who, identity.fetch_binding(cursor))


def _refused(sql: str, params: list[Any] | None = None) -> str | None:
    """The error PostgreSQL refuses ``sql`` with (None when it runs)."""
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, params or [])
    except DatabaseError as error:
        return str(error)
    return None


@pytest.fixture
def populated(world: Any) -> Any:
    with system_context("test records"):
        for patient in (world.alice, world.bob):
            MedicalRecord.objects.create(patient=patient, provider=world.doctor, diagnosis="canary")
    return world


def test_the_system_identity_sees_every_table_populated(populated: Any) -> None:
    with acting_as(SYSTEM):
        visible = _visible()
        # At least this test's rows (other tests commit some of their own).
        assert visible["patients_patient"] >= 2 and visible["records_medicalrecord"] >= 2
        assert visible["patients_careteammembership"] >= 1
        assert _claims() == {"role": "system", "user_id": str(SYSTEM.user_id), "patient_id": None, "scopes": None}


@pytest.mark.parametrize("persona", ["system", "doctor", "alice", "admin"])
def test_a_raw_set_config_of_any_identity_by_the_application_role_sees_nothing(populated: Any, persona: str) -> None:
    w = populated
    role, user, patient = {
        "system": ("system", SYSTEM.user_id, None),
        "doctor": ("clinician", w.doctor.pk, None),
        "alice": ("patient", w.alice_user.pk, w.alice.pk),
        "admin": ("admin", w.admin.pk, None),
    }[persona]
    with transaction.atomic():
        # The attack, as the app role inside one transaction: declare the identity by hand.
        _one(
            "SELECT set_config('neonpro.role', %s, true), set_config('neonpro.user_id', %s, true), "
            "set_config('neonpro.patient_id', %s, true), set_config('neonpro.scopes', 'records:read', true)",
            [role, str(user), "" if patient is None else str(patient)],
        )
        assert _one("SELECT current_user") == APP_ROLE
        assert _visible() == dict.fromkeys(PHI_TABLES, 0)
        assert _claims() == dict.fromkeys(CLAIMS)
        assert _refused("INSERT INTO patients_patient (id, mrn) VALUES (%s, 'MRN-FORGED')", [uuid.uuid4()])


def test_a_token_forged_without_the_key_sees_nothing(populated: Any) -> None:
    with transaction.atomic(), connection.cursor() as cursor:
        binding = identity.fetch_binding(cursor)
        message = f"v1:{binding.key_ids[0]}:{binding.binding}:system:{SYSTEM.user_id}::"
        # Everything right — version, installed key id, this very transaction — but the tag:
        # an unkeyed hash, and HMACs under keys the attacker could pick.
        for tag in (
            hashlib.sha256(message.encode()).hexdigest(),
            crypto.sign(message.encode(), purpose="audit", label=identity.LABEL)[1].hex(),
            "0" * 64,
        ):
            _set_token(f"{message}:{tag}")
            assert _visible() == dict.fromkeys(PHI_TABLES, 0)
            assert _claims() == dict.fromkeys(CLAIMS)


def _tampered(token: str, how: str, world: Any) -> str:
    parts = token.split(":")
    if how == "role":
        parts[3] = "system"
    elif how == "user_id":
        parts[4] = str(world.outsider.pk)
    elif how == "patient_id":
        parts[5] = str(world.bob.pk)
    elif how == "scopes":
        parts[6] = "records:write"
    elif how == "key_id":
        parts[1] = str(int(parts[1]) + 1)
    elif how == "binding":
        pid, started = parts[2].split(".")
        parts[2] = f"{pid}.{int(started) + 1}"
    elif how == "version":
        parts[0] = "v2"
    elif how == "tag":
        parts[7] = parts[7][:-1] + ("0" if parts[7][-1] != "0" else "1")
    elif how == "tag-uppercase":
        parts[7] = parts[7].upper()
    elif how == "truncated":
        return token[:-2]
    elif how == "extra-field":
        parts.insert(6, "")
    elif how == "oversized":
        return token + "0" * identity.MAX_TOKEN
    return ":".join(parts)


TAMPERING = (
    "role",
    "user_id",
    "patient_id",
    "scopes",
    "key_id",
    "binding",
    "version",
    "tag",
    "tag-uppercase",
    "truncated",
    "extra-field",
    "oversized",
)


@pytest.mark.parametrize("how", TAMPERING)
def test_a_token_with_any_tampered_part_sees_nothing(populated: Any, how: str) -> None:
    w = populated
    doctor = Identity(user_id=w.doctor.pk, role="clinician")
    with transaction.atomic():
        token = _valid_token(doctor)
        _set_token(token)
        assert _one("SELECT count(*) FROM records_medicalrecord") == 1, "the untouched token works"
        assert _claims()["role"] == "clinician"

        _set_token(_tampered(token, how, w))

        assert _visible() == dict.fromkeys(PHI_TABLES, 0)
        assert _claims() == dict.fromkeys(CLAIMS)


def _app_connection() -> psycopg.Connection[Any]:
    return psycopg.connect(f"host=127.0.0.1 port=5432 user={APP_ROLE} dbname={connection.settings_dict['NAME']}")


def test_a_valid_token_replayed_in_another_transaction_or_session_sees_nothing() -> None:
    def create() -> str:
        from patients.services import register_patient

        return str(
            register_patient(
                full_name="Replay Probe", date_of_birth=dt.date(1990, 1, 1), mrn=f"MRN-R{uuid.uuid4().hex[:8]}"
            ).pk
        )

    pk = in_thread(create)
    count = "SELECT count(*) FROM patients_patient WHERE id = %s"
    with _app_connection() as first, _app_connection() as second:
        with first.cursor() as cursor:
            binding = identity.fetch_binding(cursor)
            token = identity.token(SYSTEM, binding)
            cursor.execute(identity.SET_SQL, [token])
            assert cursor.execute(count, [pk]).fetchone()[0] == 1
            # Replayed at the same time from another session (it could read the token from
            # pg_stat_activity): another backend.
            with second.cursor() as other:
                other.execute(identity.SET_SQL, [token])
                assert other.execute(count, [pk]).fetchone()[0] == 0
                assert other.execute("SELECT neonpro_identity_claim('role')").fetchone()[0] is None
            second.rollback()
        first.commit()
        # Replayed later on the very same connection: another transaction.
        with first.cursor() as cursor:
            cursor.execute(identity.SET_SQL, [token])
            assert cursor.execute(count, [pk]).fetchone()[0] == 0
            assert cursor.execute("SELECT neonpro_identity_claim('role')").fetchone()[0] is None
            assert identity.fetch_binding(cursor).binding != binding.binding
        first.rollback()
    in_thread(lambda: _remove(pk))


def _remove(pk: str) -> None:
    with system_context("test cleanup"):
        Patient.objects.filter(pk=pk).delete()


def test_the_application_role_cannot_read_or_write_the_keys_or_change_the_functions() -> None:
    for statement in (
        "SELECT * FROM neonpro_identity.signing_key",
        "INSERT INTO neonpro_identity.signing_key VALUES (99, sha256('x'))",
        "DELETE FROM neonpro_identity.signing_key",
        "SELECT neonpro_identity.hmac('a'::bytea, 'b'::bytea, 'sha256')",
        "ALTER FUNCTION neonpro_identity_claim(text) SECURITY INVOKER",
        "ALTER FUNCTION neonpro_identity_claim(text) RESET search_path",
        "ALTER FUNCTION neonpro_identity_claim(text) OWNER TO neonpro_app",
        "CREATE OR REPLACE FUNCTION public.neonpro_identity_claim(claim text) RETURNS text "
        "LANGUAGE sql AS $$ SELECT 'system' $$",
        "DROP FUNCTION neonpro_identity_claim(text)",
        "CREATE FUNCTION public.neonpro_identity_claim(claim varchar) RETURNS text LANGUAGE sql AS $$ SELECT 'x' $$",
        "ALTER TABLE patients_patient NO FORCE ROW LEVEL SECURITY",
        "DROP POLICY patients_patient_select ON patients_patient",
    ):
        error = _refused(statement)
        assert error and ("permission denied" in error or "must be owner" in error), statement


def test_the_functions_are_safe_security_definer_functions_of_the_owner() -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT p.proname, pg_get_userbyid(p.proowner), p.prosecdef, p.proconfig, p.provolatile, p.proparallel, "
            "EXISTS (SELECT 1 FROM aclexplode(p.proacl) a WHERE a.grantee = 0), "
            "has_function_privilege(current_user, p.oid, 'EXECUTE') "
            "FROM pg_proc p WHERE p.proname IN ('neonpro_identity_claim', 'neonpro_identity_binding') ORDER BY 1"
        )
        rows = cursor.fetchall()
    assert [row[0] for row in rows] == ["neonpro_identity_binding", "neonpro_identity_claim"]
    for _, owner, definer, config, volatility, parallel, public, executable in rows:
        assert (owner, definer, volatility, parallel) == (OWNER_ROLE, True, "s", "r")
        assert config == ["search_path=pg_catalog, pg_temp"]
        assert not public, "no EXECUTE for PUBLIC"
        assert executable, "the application role may call it"
    assert _one("SELECT has_schema_privilege(%s, 'neonpro_identity', 'USAGE')", [APP_ROLE]) is False


def test_shadowing_objects_in_the_sessions_temporary_schema_changes_nothing(populated: Any) -> None:
    """The app role may create temporary objects; the function never resolves names there."""
    attacker_key = bytes(32)
    with transaction.atomic(), connection.cursor() as cursor:
        binding = identity.fetch_binding(cursor)
        cursor.execute("CREATE TEMP TABLE signing_key (key_id integer, secret bytea)")
        cursor.execute("INSERT INTO pg_temp.signing_key VALUES (%s, %s)", [binding.key_ids[0], attacker_key])
        cursor.execute(
            "CREATE FUNCTION pg_temp.hmac(bytea, bytea, text) RETURNS bytea LANGUAGE sql AS $$ SELECT '\\x00'::bytea $$"
        )
        cursor.execute(
            "CREATE FUNCTION pg_temp.sha256(bytea) RETURNS bytea LANGUAGE sql AS $$ SELECT '\\x00'::bytea $$"
        )
        message = f"v1:{binding.key_ids[0]}:{binding.binding}:system:{SYSTEM.user_id}::"
        _set_token(f"{message}:{'00' * 32}")
        assert _visible() == dict.fromkeys(PHI_TABLES, 0)
        assert _claims() == dict.fromkeys(CLAIMS)


def test_an_unknown_claim_is_null_even_with_a_valid_token() -> None:
    with acting_as(SYSTEM):
        assert _one("SELECT neonpro_identity_claim('role')") == "system"
        assert _one("SELECT neonpro_identity_claim('identity')") is None
        assert _one("SELECT neonpro_identity_claim(NULL)") is None


def test_nested_identities_are_each_signed_for_the_same_transaction(populated: Any) -> None:
    w = populated
    doctor = Identity(user_id=w.doctor.pk, role="clinician")
    with acting_as(doctor):
        outer = _one("SELECT current_setting('neonpro.identity')")
        with acting_as(SYSTEM):
            assert _one("SELECT count(*) FROM records_medicalrecord") == 2
        assert _one("SELECT count(*) FROM records_medicalrecord") == 1
        restored = _one("SELECT current_setting('neonpro.identity')")
        assert restored == outer, "the outer identity is re-signed for the same transaction"


def test_the_owner_may_declare_an_identity_with_plain_settings(owner_cursor: Any) -> None:
    """The owner could switch RLS off anyway: data migrations and dumps keep working for it."""
    with owner_cursor.connection.transaction(force_rollback=True):
        owner_cursor.execute("SELECT set_config('neonpro.role', 'system', true)")
        owner_cursor.execute("SELECT neonpro_identity_claim('role'), session_user")
        assert owner_cursor.fetchone() == ("system", OWNER_ROLE)


def test_the_app_signs_with_the_newest_installed_key_and_a_rotation_waits_for_installation(
    populated: Any, owner_cursor: Any
) -> None:
    w = populated
    doctor = Identity(user_id=w.doctor.pk, role="clinician")
    with connection.cursor() as cursor:
        installed = identity.fetch_binding(cursor).key_ids
    old = installed[0]
    new = rotate_data_key("identity")  # as an operator would, not yet installed in the database
    keyring.clear()
    assert keyring.mac_keys("identity")[0].key_id == new.pk != old

    with acting_as(doctor):
        assert _one("SELECT current_setting('neonpro.identity')").split(":")[1] == str(old)
        assert _one("SELECT count(*) FROM records_medicalrecord") == 1, "still signed with a key the database has"

    # The owner installs it (here in a transaction of its own that is rolled back).
    with owner_cursor.connection.transaction(force_rollback=True):
        assert identity.install_identity_keys(owner_cursor) == sorted({new.pk, *installed}, reverse=True)
        owner_cursor.execute("SELECT key_id, secret FROM neonpro_identity.signing_key ORDER BY key_id DESC")
        stored = dict(owner_cursor.fetchall())
        assert bytes(stored[new.pk]) == crypto.derived_key(purpose="identity", label=identity.LABEL, key_id=new.pk)
        binding = identity.fetch_binding(owner_cursor)
        assert binding.key_ids[0] == new.pk
        token = identity.token(doctor, binding)
        assert token.split(":")[1] == str(new.pk)
        owner_cursor.execute(identity.SET_SQL, [token])
        owner_cursor.execute("SELECT neonpro_identity_claim('role'), neonpro_identity_claim('user_id')")
        assert owner_cursor.fetchone() == ("clinician", str(w.doctor.pk)), "verified with the new key"

        # A destroyed key is removed at the next installation: what it signed is worthless.
        DataKey.objects.filter(pk=old).update(status=DataKey.Status.DESTROYED, wrapped_key=b"")
        keyring.clear()
        assert identity.install_identity_keys(owner_cursor) == sorted({new.pk, *installed} - {old}, reverse=True)
        owner_cursor.execute("SELECT count(*) FROM neonpro_identity.signing_key WHERE key_id = %s", [old])
        assert owner_cursor.fetchone()[0] == 0


def test_without_a_common_key_nothing_is_signed() -> None:
    with pytest.raises(IdentityKeyMissing, match=re.escape("run `manage.py db identity-keys` as the owner role")):
        identity.token(SYSTEM, Binding("1.2", ()))
    with pytest.raises(IdentityKeyMissing):
        identity.token(SYSTEM, Binding("1.2", (2_000_000_000,)))


@pytest.mark.parametrize(
    ("who", "message"),
    [
        (Identity(user_id=None, role="root"), "unknown identity role"),
        (Identity(user_id=None, role="agent", scopes=("records:read",)), "identity scopes must be"),
        (Identity(user_id=None, role="agent", scopes=("a b",)), "identity scopes must be"),
    ],
)
def test_what_cannot_be_signed_is_refused(who: Identity, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        identity.token(who, Binding("1.2", (1,)))


def test_agent_scopes_are_signed_and_read_back() -> None:
    agent = Identity(user_id=uuid.uuid4(), role="agent", scopes=("records.read", "imaging-upload"))
    with acting_as(agent):
        assert _claims() == {
            "role": "agent",
            "user_id": str(agent.user_id),
            "patient_id": None,
            "scopes": "records.read imaging-upload",
        }
        assert _visible() == dict.fromkeys(PHI_TABLES, 0), "an agent with no patient set sees nothing"


def test_db_identity_keys_needs_the_owner() -> None:
    with pytest.raises(CommandError, match="run this as the owner role"):
        call_command("db", "identity-keys", "--operator", "tester", stdout=StringIO())


def test_db_identity_keys_as_the_owner_installs_every_usable_key(tmp_path: Path) -> None:
    settings = connection.settings_dict
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env.update(
        DATABASE_URL=f"postgres://{OWNER_ROLE}@127.0.0.1:{settings['PORT'] or 5432}/{settings['NAME']}",
        NEONPRO_MASTER_KEY=TEST_MASTER_KEY,
        NEONPRO_DATA_DIR=str(tmp_path),
    )
    done = subprocess.run(
        [sys.executable, str(BASE_DIR / "manage.py"), "db", "identity-keys", "--operator", "dba"],
        env=env,
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    with connection.cursor() as cursor:
        key_ids = identity.fetch_binding(cursor).key_ids
    assert done.stdout.strip() == f"Identity signing keys installed: {', '.join(map(str, key_ids))} (newest signs)."
