"""Sealed clinical rows (keys.integrity) from the inside: versions, seals, partial saves, stale
copies, bulk_create, the upgrade of legacy rows by the re-encryption job, and the medical
record history (encrypted, append-only, row-level secured) — as the application role."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import psycopg
import pytest
from django.db import connection, transaction
from django.db.utils import ProgrammingError

from keys import crypto
from keys.exceptions import AuthenticationError, RowIntegrityError, StaleRowError
from keys.fields import encrypted_fields
from keys.integrity import SEAL_SIZE, seal_key_id
from keys.keyring import keyring
from keys.reencrypt import reencrypt
from keys.rotation import rotate_data_key
from neonpro.audit.models import AuditEvent
from neonpro.security.context import system_context
from records import services
from records.models import Appointment, MedicalRecord, MedicalRecordRevision
from tests.conftest import as_identity

pytestmark = pytest.mark.django_db
RECORD = "records_medicalrecord"
CLINICAL = ("diagnosis", "treatment_plan", "medications", "notes")


@pytest.fixture
def clinic(user_factory, patient_factory, care_team) -> Any:  # type: ignore[no-untyped-def]
    class Clinic:
        pass

    c = Clinic()
    c.doctor = user_factory("clinician", username="dr.rows")
    c.outsider = user_factory("clinician", username="dr.elsewhere")
    c.alice_user = user_factory("patient", username="alice.rows")
    c.alice = patient_factory(full_name="Alice Rows", user=c.alice_user)
    c.bob = patient_factory(full_name="Bob Rows")
    care_team(c.alice, c.doctor)
    care_team(c.bob, c.doctor)
    with as_identity(c.doctor) as identity:
        c.record = services.create_record(
            identity, c.alice.pk, {"diagnosis": "Asthma", "medications": "Salbutamol", "lab_results": {"fev1": 71}}
        )
    return c


def _columns(pk: Any, *columns: str, table: str = RECORD) -> dict[str, Any]:
    names = ", ".join(f'"{c}"' for c in columns)
    with system_context("test: read raw"), connection.cursor() as cursor:
        cursor.execute(f"SELECT {names} FROM {table} WHERE id = %s", [pk])
        row = cursor.fetchone()
    return {c: bytes(v) if isinstance(v, memoryview) else v for c, v in zip(columns, row, strict=True)}


def _set(pk: Any, table: str = RECORD, **values: Any) -> None:
    assignments = ", ".join(f'"{c}" = %s' for c in values)
    with system_context("test: attacker"), connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET {assignments} WHERE id = %s", [*values.values(), pk])
        assert cursor.rowcount == 1


def _load(pk: Any) -> MedicalRecord:
    with system_context("test: load"):
        record = MedicalRecord.objects.get(pk=pk)
        for name in (*CLINICAL, "lab_results"):
            getattr(record, name)
        return record


def _make_legacy(record: MedicalRecord) -> dict[str, bytes]:
    """Rewrite a row as the code before row seals wrote it: envelope v1 values bound to
    ``app.model.field`` and the row's id only, version 0, no seal."""
    legacy = {}
    for field in encrypted_fields(MedicalRecord):
        value = getattr(record, field.attname)
        if value is not None:
            legacy[field.column] = crypto.encrypt(field.encode(value), context=field._prefix + record.pk.bytes)
    _set(record.pk, row_version=0, row_seal=None, **legacy)
    return legacy


# -- versions and seals -----------------------------------------------------------------


def test_a_new_row_is_at_version_one_with_a_seal_and_every_save_moves_it_on(clinic) -> None:  # type: ignore[no-untyped-def]
    first = _columns(clinic.record.pk, "row_version", "row_seal", "diagnosis", "medications")
    assert first["row_version"] == 1 and len(first["row_seal"]) == SEAL_SIZE
    assert seal_key_id(first["row_seal"]) == keyring.mac_keys("audit")[0].key_id
    with as_identity(clinic.doctor) as identity:
        services.update_record(identity, clinic.record, {"notes": "Reviewed"})  # one field changed...
    second = _columns(clinic.record.pk, "row_version", "row_seal", "diagnosis", "medications")
    assert second["row_version"] == 2 and second["row_seal"] != first["row_seal"]
    # ... and every value re-sealed for the new version, so none of the old ones opens any more.
    assert second["diagnosis"] != first["diagnosis"] and second["medications"] != first["medications"]
    record = _load(clinic.record.pk)
    assert (record.diagnosis, record.medications, record.notes, record.lab_results) == (
        "Asthma",
        "Salbutamol",
        "Reviewed",
        {"fev1": 71},
    )


def test_save_with_update_fields_and_deferred_values_reseals_the_whole_row(clinic) -> None:  # type: ignore[no-untyped-def]
    with system_context("test"):
        record = MedicalRecord.objects.only("id", "patient_id", "row_version", "notes").get(pk=clinic.record.pk)
        record.notes = "Only notes loaded"
        record.save(update_fields=["notes"])
    assert _load(clinic.record.pk).diagnosis == "Asthma"
    assert _columns(clinic.record.pk, "row_version")["row_version"] == 2


def test_a_stale_copy_cannot_overwrite_a_newer_version(clinic) -> None:  # type: ignore[no-untyped-def]
    stale = _load(clinic.record.pk)
    fresh = _load(clinic.record.pk)
    with system_context("test"):
        fresh.diagnosis = "Asthma, controlled"
        fresh.save()
        stale.notes = "written from an old copy"
        with pytest.raises(StaleRowError, match="changed since it was loaded"):
            stale.save()
    assert stale.row_version == 1  # nothing half-applied on the instance
    record = _load(clinic.record.pk)
    assert (record.diagnosis, record.notes, record.row_version) == ("Asthma, controlled", "", 2)


def test_raising_the_version_or_swapping_seals_between_rows_is_detected(clinic) -> None:  # type: ignore[no-untyped-def]
    with as_identity(clinic.doctor) as identity:
        other = services.create_record(identity, clinic.alice.pk, {"diagnosis": "Other"})
    seal = _columns(other.pk, "row_seal")["row_seal"]
    _set(clinic.record.pk, row_seal=seal)
    with pytest.raises(RowIntegrityError, match="seal does not match"):
        _load(clinic.record.pk)
    _set(other.pk, row_version=7)
    with pytest.raises(RowIntegrityError):
        _load(other.pk)


def test_rolling_the_version_back_with_an_older_value_and_seal_needs_the_whole_row(clinic) -> None:  # type: ignore[no-untyped-def]
    """Version, seal and one value put back together: the other values, sealed for the newer
    version, no longer open — only a whole older row passes the row's own checks."""
    v1 = _columns(clinic.record.pk, "row_version", "row_seal", "diagnosis")
    with as_identity(clinic.doctor) as identity:
        services.update_record(identity, clinic.record, {"diagnosis": "Not asthma", "medications": "None"})
    _set(clinic.record.pk, **v1)
    with pytest.raises(AuthenticationError):
        _load(clinic.record.pk)


def test_a_whole_older_row_is_caught_by_its_history(clinic) -> None:  # type: ignore[no-untyped-def]
    columns = [f.column for f in MedicalRecord._meta.concrete_fields if f.column != "id"]
    v1 = _columns(clinic.record.pk, *columns)
    with as_identity(clinic.doctor) as identity:
        services.update_record(identity, clinic.record, {"diagnosis": "Not asthma"})
    _set(clinic.record.pk, **v1)
    assert _load(clinic.record.pk).diagnosis == "Asthma"  # the row alone cannot tell
    with as_identity(clinic.doctor) as identity, pytest.raises(RowIntegrityError, match="older than its history"):
        services.get_record(identity, clinic.record.pk)
    event = AuditEvent.objects.filter(action="integrity.failed", resource_id=clinic.record.pk).last()
    assert event is not None and event.details["code"] == "older_than_history"


def test_moving_a_value_between_patients_rows_fails_even_with_the_seal_moved_too(clinic) -> None:  # type: ignore[no-untyped-def]
    with as_identity(clinic.doctor) as identity:
        bobs = services.create_record(identity, clinic.bob.pk, {"diagnosis": "Bob's"})
    _set(bobs.pk, diagnosis=_columns(clinic.record.pk, "diagnosis")["diagnosis"])
    with pytest.raises(AuthenticationError):
        _load(bobs.pk)


def test_bulk_create_seals_rows_as_save_does(clinic) -> None:  # type: ignore[no-untyped-def]
    with system_context("test"):
        made = MedicalRecord.objects.bulk_create(
            [MedicalRecord(patient=clinic.bob, provider=clinic.doctor, diagnosis=f"Bulk {i}") for i in range(5)]
        )
        assert [r.diagnosis for r in made] == [f"Bulk {i}" for i in range(5)]
        with pytest.raises(TypeError, match="sealed"):
            MedicalRecord.objects.bulk_create(
                made, update_conflicts=True, unique_fields=["id"], update_fields=["record_date"]
            )
    for i, record in enumerate(made):
        assert _columns(record.pk, "row_version")["row_version"] == 1
        assert _load(record.pk).diagnosis == f"Bulk {i}"
    _set(made[0].pk, patient_id=clinic.alice.pk)
    with pytest.raises(RowIntegrityError):
        _load(made[0].pk)


def test_appointments_are_sealed_too(clinic) -> None:  # type: ignore[no-untyped-def]
    with system_context("test"):
        appointment = Appointment.objects.create(
            patient=clinic.alice, provider=clinic.doctor, scheduled_at=dt.datetime(2030, 5, 1, 8, 30, tzinfo=dt.UTC)
        )
        appointment.status = "confirmed"
        appointment.save(update_fields=["status"])
        assert Appointment.objects.get(pk=appointment.pk).status == "confirmed"
    _set(appointment.pk, table="records_appointment", status="cancelled")
    with system_context("test"), pytest.raises(RowIntegrityError):
        Appointment.objects.get(pk=appointment.pk)


# -- legacy rows and the re-encryption job ----------------------------------------------


def test_legacy_rows_read_are_upgraded_by_reencryption_and_are_protected_afterwards(clinic, settings) -> None:  # type: ignore[no-untyped-def]
    legacy = _make_legacy(clinic.record)
    assert _load(clinic.record.pk).diagnosis == "Asthma"  # old-context values keep reading
    settings.NEONPRO_LEGACY_ROWS_READABLE = False
    with pytest.raises(RowIntegrityError, match="no seal"):
        _load(clinic.record.pk)
    with system_context("test"):
        [job] = [j for j in reencrypt("field") if j.model == "records.MedicalRecord"]
    assert job.status == "done" and job.rows_changed >= 1
    upgraded = _columns(clinic.record.pk, "row_version", "row_seal", "diagnosis")
    assert upgraded["row_version"] == 1 and upgraded["row_seal"] is not None
    assert upgraded["diagnosis"] != legacy["diagnosis"]
    record = _load(clinic.record.pk)  # reads with legacy rows refused
    assert (record.diagnosis, record.lab_results) == ("Asthma", {"fev1": 71})
    # Protected now: the old legacy ciphertext, and a move to another patient, are refused.
    _set(clinic.record.pk, diagnosis=legacy["diagnosis"])
    with pytest.raises(AuthenticationError):
        _load(clinic.record.pk)
    _set(clinic.record.pk, diagnosis=upgraded["diagnosis"], patient_id=clinic.bob.pk)
    with pytest.raises(RowIntegrityError):
        _load(clinic.record.pk)
    # ... and so is putting the whole legacy row back once legacy rows are no longer read.
    _set(clinic.record.pk, patient_id=clinic.alice.pk, row_version=0, row_seal=None, **legacy)
    with pytest.raises(RowIntegrityError):
        _load(clinic.record.pk)


def test_a_legacy_record_keeps_its_first_state_in_the_history_when_amended(clinic) -> None:  # type: ignore[no-untyped-def]
    with system_context("test: a record from before history"):
        old = MedicalRecord.objects.create(patient=clinic.bob, provider=clinic.doctor, diagnosis="Written long ago")
    _make_legacy(old)
    record = _load(old.pk)
    with as_identity(clinic.doctor) as identity:
        services.update_record(identity, record, {"diagnosis": "Amended"})
        history = services.record_history(identity, old.pk)
    assert [(r.action, r.record_version, r.diagnosis) for r in history] == [
        ("baseline", 0, "Written long ago"),
        ("update", 1, "Amended"),
    ]


def test_key_rotation_reseals_records_and_their_history(clinic) -> None:  # type: ignore[no-untyped-def]
    with as_identity(clinic.doctor) as identity:
        services.update_record(identity, clinic.record, {"diagnosis": "Asthma, severe"})
    with system_context("test"):
        rotate_data_key("field")
        rotate_data_key("audit")
        keyring.clear()
        jobs = {j.model: j for j in reencrypt("field")}
    assert jobs["records.MedicalRecord"].status == jobs["records.MedicalRecordRevision"].status == "done"
    new_field, new_mac = keyring.active("field").header, keyring.mac_keys("audit")[0].key_id
    for table, pk in [(RECORD, clinic.record.pk)] + [
        ("records_medicalrecordrevision", r.pk) for r in MedicalRecordRevision._plain.filter(record=clinic.record)
    ]:
        raw = _columns(pk, "diagnosis", "row_seal", table=table)
        assert raw["diagnosis"][:5] == new_field and seal_key_id(raw["row_seal"]) == new_mac
    with as_identity(clinic.doctor) as identity:
        assert [r.diagnosis for r in services.record_history(identity, clinic.record.pk)] == [
            "Asthma",
            "Asthma, severe",
        ]
        assert services.get_record(identity, clinic.record.pk).diagnosis == "Asthma, severe"


# -- the history: who, when, what version; encrypted; append-only; RLS -------------------


def test_every_amendment_can_be_reconstructed_from_the_history(clinic) -> None:  # type: ignore[no-untyped-def]
    with as_identity(clinic.doctor) as identity:
        services.update_record(identity, clinic.record, {"diagnosis": "COPD", "notes": "Spirometry redone"})
        services.update_record(identity, clinic.record, {"medications": "Tiotropium"})
        history = services.record_history(identity, clinic.record.pk)
    assert [(r.record_version, r.action, r.changed_fields) for r in history] == [
        (1, "create", ["diagnosis", "lab_results", "medications"]),
        (2, "update", ["diagnosis", "notes"]),
        (3, "update", ["medications"]),
    ]
    assert [(r.diagnosis, r.medications, r.notes) for r in history] == [
        ("Asthma", "Salbutamol", ""),
        ("COPD", "Salbutamol", "Spirometry redone"),
        ("COPD", "Tiotropium", "Spirometry redone"),
    ]
    assert {r.changed_by for r in history} == {clinic.doctor.pk}
    assert all(r.patient_id == clinic.alice.pk and r.changed_at is not None for r in history)
    raw = _columns(history[1].pk, "diagnosis", table="records_medicalrecordrevision")["diagnosis"]
    assert b"COPD" not in raw and raw[0] == 1  # encrypted like the record
    assert AuditEvent.objects.filter(action="record.history", resource_id=clinic.record.pk).exists()


def test_history_rows_are_scoped_like_records(clinic) -> None:  # type: ignore[no-untyped-def]
    def visible(user: Any) -> int:
        with as_identity(user), connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM records_medicalrecordrevision WHERE record_id = %s", [clinic.record.pk]
            )
            return int(cursor.fetchone()[0])

    assert visible(clinic.doctor) == 1
    assert visible(clinic.alice_user) == 1
    assert visible(clinic.outsider) == 0
    with as_identity(clinic.outsider) as identity, pytest.raises(MedicalRecord.DoesNotExist):
        services.record_history(identity, clinic.record.pk)


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE records_medicalrecordrevision SET changed_fields = '[]'::jsonb WHERE record_id = %s",
        "UPDATE records_medicalrecordrevision SET record_version = 5 WHERE record_id = %s",
        "UPDATE records_medicalrecordrevision SET diagnosis = notes WHERE record_id = %s",
        "DELETE FROM records_medicalrecordrevision WHERE record_id = %s",
    ],
)
def test_history_is_append_only_for_the_application_role(clinic, statement) -> None:  # type: ignore[no-untyped-def]
    if statement.startswith("UPDATE"):  # a clinician's UPDATE finds no row (RLS: the system only)
        with as_identity(clinic.doctor), connection.cursor() as cursor:
            cursor.execute(statement, [clinic.record.pk])
            assert cursor.rowcount == 0
    identities = [lambda: system_context("test: attacker")]
    if statement.startswith("DELETE"):  # refused for everyone, whatever RLS lets it see
        identities.append(lambda: as_identity(clinic.doctor))
    for identity in identities:
        with identity(), pytest.raises(ProgrammingError, match="append-only"):
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(statement, [clinic.record.pk])
    assert _columns(clinic.record.pk, "row_version")["row_version"] == 1
    with as_identity(clinic.doctor) as identity:
        assert [r.diagnosis for r in services.record_history(identity, clinic.record.pk)] == ["Asthma"]


def test_the_one_update_history_lets_through_is_re_encryptions_and_it_cannot_forge(clinic) -> None:  # type: ignore[no-untyped-def]
    statement = "UPDATE records_medicalrecordrevision SET row_version = row_version + 1 WHERE record_id = %s"
    with as_identity(clinic.doctor), connection.cursor() as cursor:
        cursor.execute(statement, [clinic.record.pk])
        assert cursor.rowcount == 0  # RLS: the system identity only
    with system_context("test: attacker"), connection.cursor() as cursor:
        cursor.execute(statement, [clinic.record.pk])
        assert cursor.rowcount == 1
    with as_identity(clinic.doctor) as identity, pytest.raises(RowIntegrityError):
        services.record_history(identity, clinic.record.pk)


def test_history_cannot_be_truncated_even_by_its_owner(db, owner_cursor) -> None:  # type: ignore[no-untyped-def]
    # No fixture rows: the test's own transaction must hold no lock the owner's TRUNCATE waits for.
    owner_cursor.execute("SET lock_timeout = '20s'")
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
        owner_cursor.execute("TRUNCATE records_medicalrecordrevision")


def test_only_the_records_clinician_writes_its_history_and_only_for_its_patient(clinic) -> None:  # type: ignore[no-untyped-def]
    raw = _columns(clinic.record.pk, *CLINICAL)

    def forge(user: Any, *, changed_by: Any, patient: Any) -> None:
        with as_identity(user), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO records_medicalrecordrevision (id, record_id, patient_id, provider_id, record_version, "
                "action, changed_by, changed_at, changed_fields, record_date, diagnosis, treatment_plan, "
                "medications, notes, row_version) VALUES (%s, %s, %s, %s, 99, 'update', %s, now(), '[]'::jsonb, "
                "current_date, %s, %s, %s, %s, 1)",
                [uuid.uuid4(), clinic.record.pk, patient, clinic.doctor.pk, changed_by, *raw.values()],
            )

    for user, changed_by, patient in [
        (clinic.outsider, clinic.outsider.pk, clinic.alice.pk),  # not on the care team
        (clinic.alice_user, clinic.alice_user.pk, clinic.alice.pk),  # patients write no history
        (clinic.doctor, clinic.outsider.pk, clinic.alice.pk),  # in someone else's name
        (clinic.doctor, clinic.doctor.pk, clinic.bob.pk),  # under another patient
    ]:
        with pytest.raises(ProgrammingError, match="row-level security"):
            forge(user, changed_by=changed_by, patient=patient)
    # A row that passes RLS still has no valid seal: it cannot pose as history.
    forge(clinic.doctor, changed_by=clinic.doctor.pk, patient=clinic.alice.pk)
    with as_identity(clinic.doctor) as identity, pytest.raises(RowIntegrityError):
        services.record_history(identity, clinic.record.pk)


def test_a_stale_save_through_the_api_layer_answers_409() -> None:
    from neonpro.security.api import exception_handler

    response = exception_handler(StaleRowError("records.medicalrecord row x: changed"), {})
    assert response is not None and response.status_code == 409
    assert "reload" in response.data["error"]["message"] and response.data["error"]["code"] == "conflict"
