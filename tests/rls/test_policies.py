"""Row-level security at the database, as the application role, with raw SQL.

The ORM is not involved here: these are the guarantees that hold for any query the
application role can send.
"""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from django.apps import apps
from django.db import DatabaseError, connection, connections, transaction
from django.utils import timezone

from keys.fields import EncryptedMixin
from neonpro.security.context import ANONYMOUS, Identity, acting_as, system_context
from neonpro.security.db import ENCRYPTED_NOT_PHI_TABLES, PHI_TABLES, rls_status, runtime_role_problems
from patients.models import EmergencyAccessGrant, Patient
from records.models import MedicalRecord
from tests.conftest import as_identity

pytestmark = pytest.mark.django_db


def _count(table: str, where: str = "", params: list[object] | None = None) -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {table} {where}", params or [])
        return int(cursor.fetchone()[0])


def _ids(table: str, column: str = "id") -> set[object]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM {table}")
        return {row[0] for row in cursor.fetchall()}


def _refused(sql: str, params: list[object]) -> bool:
    """True when PostgreSQL refuses the statement (RLS WITH CHECK or privileges)."""
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, params)
    except DatabaseError:
        return True
    return False


@pytest.fixture
def records(world):  # type: ignore[no-untyped-def]
    with system_context("test records"):
        for patient in (world.alice, world.bob):
            MedicalRecord.objects.create(patient=patient, provider=world.doctor, diagnosis=f"canary dx {patient.pk}")
    return world


def test_suite_runs_as_the_application_role_that_cannot_bypass_rls() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_user, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
        user, superuser, bypass = cursor.fetchone()
    assert (user, superuser, bypass) == ("neonpro_app", False, False)
    assert runtime_role_problems() == []


def test_every_phi_table_is_enabled_forced_and_has_policies() -> None:
    status = rls_status()
    assert set(status) == set(PHI_TABLES)
    for table, (enabled, forced, policies) in status.items():
        assert enabled and forced, table
        assert policies >= 4, table


def test_every_table_with_phi_is_listed_as_a_phi_table() -> None:
    """A new model with encrypted fields or a patient link must get RLS too."""
    for model in apps.get_models():
        has_phi = any(isinstance(f, EncryptedMixin) for f in model._meta.concrete_fields)
        links_patient = any(getattr(f, "related_model", None) is Patient for f in model._meta.concrete_fields)
        if model._meta.db_table in ENCRYPTED_NOT_PHI_TABLES:
            assert has_phi and not links_patient, f"{model._meta.label}: not an encrypted table without patients"
            continue
        if (has_phi or links_patient or model is Patient) and model._meta.app_label != "keys_tests":
            assert model._meta.db_table in PHI_TABLES, model._meta.label


def test_the_encrypted_tables_without_phi_are_models_and_not_phi_tables() -> None:
    """The exemption names real tables only, none of them a PHI table."""
    tables = {model._meta.db_table for model in apps.get_models()}
    assert set(ENCRYPTED_NOT_PHI_TABLES) <= tables
    assert not set(ENCRYPTED_NOT_PHI_TABLES) & set(PHI_TABLES)


def test_no_identity_sees_no_phi_rows(records) -> None:  # type: ignore[no-untyped-def]
    with acting_as(ANONYMOUS):
        for table in PHI_TABLES:
            assert _count(table) == 0, table
    for table in PHI_TABLES:  # nor outside any acting_as block
        assert _count(table) == 0, table


def test_patient_sees_only_their_own_rows(records) -> None:  # type: ignore[no-untyped-def]
    w = records
    with as_identity(w.alice_user):
        assert _ids("patients_patient") == {w.alice.pk}
        assert _ids("records_medicalrecord", "patient_id") == {w.alice.pk}
        assert _ids("patients_careteammembership", "patient_id") == {w.alice.pk}
        assert _count("patients_patient", "WHERE id = %s", [w.bob.pk]) == 0


def test_clinician_sees_care_team_patients_only(records) -> None:  # type: ignore[no-untyped-def]
    w = records
    with as_identity(w.doctor):
        assert _ids("patients_patient") == {w.alice.pk}
        assert _ids("records_medicalrecord", "patient_id") == {w.alice.pk}
    with as_identity(w.outsider):
        for table in PHI_TABLES:
            assert _count(table) == 0, table


def test_admin_sees_no_phi_but_manages_care_teams(records) -> None:  # type: ignore[no-untyped-def]
    with as_identity(records.admin):
        assert _count("patients_patient") == 0
        assert _count("records_medicalrecord") == 0
        assert _count("patients_careteammembership") == 1


def test_writes_outside_ones_rights_are_refused(records) -> None:  # type: ignore[no-untyped-def]
    w = records
    with as_identity(w.doctor):
        assert _refused(
            "INSERT INTO records_medicalrecord (id, patient_id, provider_id, record_date, diagnosis, treatment_plan, "
            "medications, notes, created_at, updated_at) SELECT gen_random_uuid(), %s, %s, now(), diagnosis, "
            "diagnosis, diagnosis, diagnosis, now(), now() FROM records_medicalrecord LIMIT 1",
            [w.bob.pk, w.doctor.pk],
        )
        with connection.cursor() as cursor:
            cursor.execute("UPDATE patients_patient SET active = false WHERE id = %s", [w.bob.pk])
            assert cursor.rowcount == 0
            cursor.execute("DELETE FROM records_medicalrecord WHERE patient_id = %s", [w.alice.pk])
            assert cursor.rowcount == 0, "clinicians cannot delete records"
    with as_identity(w.alice_user):
        with connection.cursor() as cursor:
            cursor.execute("UPDATE patients_patient SET contact_by_sms = true WHERE id = %s", [w.bob.pk])
            assert cursor.rowcount == 0
            cursor.execute("UPDATE patients_patient SET contact_by_sms = true WHERE id = %s", [w.alice.pk])
            assert cursor.rowcount == 1
        assert _refused(
            "INSERT INTO records_appointment (id, patient_id, provider_id, scheduled_at, duration_minutes, status, "
            "reason, notes, created_at, updated_at) VALUES (gen_random_uuid(), %s, %s, now(), 30, 'requested', "
            "'\\x01'::bytea, '\\x01'::bytea, now(), now())",
            [w.bob.pk, w.doctor.pk],
        )
        assert (
            _refused("UPDATE patients_patient SET user_id = %s WHERE id = %s", [w.alice_user.pk, w.alice.pk]) is False
        )
        assert _refused(
            "INSERT INTO patients_careteammembership (id, patient_id, clinician_id, starts_on, created_at) "
            "VALUES (gen_random_uuid(), %s, %s, current_date, now())",
            [w.alice.pk, w.outsider.pk],
        )


def test_break_glass_grants_read_only_access_until_expiry(records) -> None:  # type: ignore[no-untyped-def]
    w = records
    now = timezone.now()
    with as_identity(w.outsider):
        EmergencyAccessGrant.objects.create(
            clinician=w.outsider,
            patient=w.bob,
            reason="Unconscious patient in the emergency department",
            expires_at=now + dt.timedelta(hours=1),
        )
        assert _ids("patients_patient") == {w.bob.pk}
        assert _ids("records_medicalrecord", "patient_id") == {w.bob.pk}
        with connection.cursor() as cursor:
            cursor.execute("UPDATE patients_patient SET active = false WHERE id = %s", [w.bob.pk])
            assert cursor.rowcount == 0, "break-glass access is read-only"
        with connection.cursor() as cursor:
            cursor.execute("UPDATE patients_emergencyaccessgrant SET expires_at = expires_at + interval '1 day'")
            assert cursor.rowcount == 0, "clinicians cannot extend their own grant"
    with system_context("expire the grant"):
        EmergencyAccessGrant.objects.filter(clinician=w.outsider).update(
            granted_at=now - dt.timedelta(hours=2), expires_at=now - dt.timedelta(minutes=1)
        )
    with as_identity(w.outsider):
        assert _count("patients_patient") == 0, "an expired grant stops working without any job"


def test_clinicians_cannot_backdate_or_overextend_grants(records) -> None:  # type: ignore[no-untyped-def]
    w = records
    with as_identity(w.outsider):
        assert _refused(
            "INSERT INTO patients_emergencyaccessgrant (id, clinician_id, patient_id, reason, granted_at, expires_at) "
            "SELECT gen_random_uuid(), %s, %s, '\\x01'::bytea, now(), now() + interval '3 days'",
            [w.outsider.pk, w.bob.pk],
        )
        assert _refused(
            "INSERT INTO patients_emergencyaccessgrant (id, clinician_id, patient_id, reason, granted_at, expires_at) "
            "SELECT gen_random_uuid(), %s, %s, '\\x01'::bytea, now(), now() + interval '1 hour'",
            [w.doctor.pk, w.bob.pk],
        ), "a grant for someone else"


def test_identity_is_cleared_when_a_block_ends(records) -> None:  # type: ignore[no-untyped-def]
    with as_identity(records.alice_user):
        assert _count("patients_patient") == 1
    assert _count("patients_patient") == 0, "the enclosing transaction must not keep alice's identity"


def test_identity_does_not_leak_between_transactions_on_a_reused_connection() -> None:
    """Two 'requests' on one physical connection: the second, anonymous, sees nothing.

    Runs in threads with their own (committing) connections; the test itself writes nothing,
    so it holds no audit-chain lock the threads would wait for.
    """
    results: dict[str, object] = {}

    def worker() -> None:
        try:
            conn = connections["default"]
            with acting_as(alice):
                results["during"] = _count_on(conn)
            backend_pid = conn.connection.info.backend_pid
            results["after"] = _count_on(conn)
            with conn.cursor() as cursor:
                cursor.execute("SELECT current_setting('neonpro.user_id', true)")
                results["guc"] = cursor.fetchone()[0]
            results["same_backend"] = backend_pid == conn.connection.info.backend_pid
        except Exception as exc:  # pragma: no cover
            results["error"] = exc
        finally:
            connections.close_all()

    # The fixtures' rows are uncommitted in the test transaction, so the worker commits its own.
    def seed() -> None:
        try:
            from neonpro.accounts.models import User
            from patients.services import register_patient

            user = User.objects.create_user(username=f"leak-{timezone.now().timestamp()}", role="patient")
            patient = register_patient(
                full_name="Leak Probe", date_of_birth=dt.date(1990, 1, 1), mrn="MRN-LEAK", user=user
            )
            results["identity"] = Identity(user_id=user.pk, role="patient", patient_id=patient.pk)
        except Exception as exc:  # pragma: no cover
            results["error"] = exc
        finally:
            connections.close_all()

    thread = threading.Thread(target=seed)
    thread.start()
    thread.join(60)
    assert "error" not in results, results.get("error")
    alice = results["identity"]
    thread = threading.Thread(target=worker)
    thread.start()
    thread.join(60)
    assert "error" not in results, results.get("error")
    assert results["during"] == 1  # alice sees her own committed row
    assert results["same_backend"] is True
    assert results["after"] == 0
    assert results["guc"] in ("", None)


def _count_on(conn) -> int:  # type: ignore[no-untyped-def]
    with conn.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM patients_patient")
        return int(cursor.fetchone()[0])


def test_orm_scoping_matches_the_database_policies(records) -> None:  # type: ignore[no-untyped-def]
    """The ORM filter (what SQLite gets) and RLS (what raw SQL gets) agree for every persona."""
    w = records
    for user in (w.alice_user, w.bob_user, w.doctor, w.outsider, w.admin):
        with as_identity(user):
            orm = set(Patient.objects.values_list("id", flat=True))
            orm_records = set(MedicalRecord.objects.values_list("patient_id", flat=True))
            raw = _ids("patients_patient")
        with system_context("compare"), connection.cursor():
            from neonpro.security.context import identity_for_user

            identity = identity_for_user(user)
            filtered = set(Patient.objects.visible_to(identity).values_list("id", flat=True))
            filtered_records = set(MedicalRecord.objects.visible_to(identity).values_list("patient_id", flat=True))
        assert orm == raw == filtered, user.username
        assert orm_records == filtered_records, user.username
