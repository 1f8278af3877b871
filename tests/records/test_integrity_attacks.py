"""The attacks of the review's "integrity beyond the encrypted bytes" finding, as the
application role with raw SQL: replaying an older ciphertext of the same row and field,
moving a record to another patient, changing a row's author, date or status. Each one read
back silently before clinical rows were sealed (keys.integrity); each is now refused on read
with an error that names the row and nothing of its content, and leaves an audit event.

Only names that existed before the fix are imported, so on the old code these tests fail on
their assertions, not on an import.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from keys.exceptions import DecryptionError
from neonpro.audit.models import AuditEvent
from neonpro.security.context import system_context
from records import services
from records.models import Appointment, MedicalRecord
from tests.conftest import as_identity
from tests.errors import error_message

pytestmark = pytest.mark.django_db
SECRET = "Canary diagnosis: stage IV"


@pytest.fixture
def clinic(user_factory, patient_factory, care_team) -> Any:  # type: ignore[no-untyped-def]
    class Clinic:
        pass

    c = Clinic()
    c.doctor = user_factory("clinician", username="dr.seal")
    c.other_doctor = user_factory("clinician", username="dr.other")
    c.alice = patient_factory(full_name="Alice Sealed")
    c.carol = patient_factory(full_name="Carol Sealed")
    for patient in (c.alice, c.carol):
        care_team(patient, c.doctor)
        care_team(patient, c.other_doctor)
    with as_identity(c.doctor) as identity:
        c.identity = identity
        c.record = services.create_record(identity, c.alice.pk, {"diagnosis": SECRET, "notes": "first note"})
        c.appointment = services.create_appointment(
            identity, c.alice.pk, {"scheduled_at": timezone.now() + dt.timedelta(days=3), "reason": "Canary reason"}
        )
    return c


def _raw(table: str, pk: Any, column: str) -> Any:
    with system_context("test: read raw"), connection.cursor() as cursor:
        cursor.execute(f'SELECT "{column}" FROM {table} WHERE id = %s', [pk])
        return cursor.fetchone()[0]


def _tamper(table: str, pk: Any, column: str, value: Any) -> None:
    """What someone with the application role's SQL can do (one UPDATE, RLS satisfied)."""
    with system_context("test: attacker"), connection.cursor() as cursor:
        cursor.execute(f'UPDATE {table} SET "{column}" = %s WHERE id = %s', [value, pk])
        assert cursor.rowcount == 1


def _read_record(clinic: Any) -> str:
    with as_identity(clinic.doctor) as identity:
        record = services.get_record(identity, clinic.record.pk)
        return str(record.diagnosis) + str(record.notes)


def _read_appointment(clinic: Any) -> str:
    with as_identity(clinic.doctor) as identity:
        appointment = services.get_appointment(identity, clinic.appointment.pk)
        return f"{appointment.status} {appointment.reason} {appointment.scheduled_at}"


def _assert_refused(read: Any, clinic: Any, model: str, pk: Any) -> None:
    with pytest.raises(DecryptionError) as info:
        read(clinic)
    message = str(info.value)
    assert str(pk) in message
    for canary in ("Canary", "stage IV", "first note", "Alice", "Carol"):
        assert canary not in message
    events = list(AuditEvent.objects.filter(action="integrity.failed", resource_id=pk))
    assert events, "the integrity failure is in the audit log"
    assert all(e.resource_type == model and e.outcome == "error" for e in events)
    assert "Canary" not in b"".join(e.canonical() for e in events).decode()


def test_replaying_an_older_ciphertext_of_the_same_row_and_field_is_detected(clinic) -> None:  # type: ignore[no-untyped-def]
    old = bytes(_raw("records_medicalrecord", clinic.record.pk, "diagnosis"))
    with as_identity(clinic.doctor) as identity:
        services.update_record(identity, clinic.record, {"diagnosis": "Corrected: no malignancy"})
    assert "Corrected" in _read_record(clinic)
    _tamper("records_medicalrecord", clinic.record.pk, "diagnosis", old)
    _assert_refused(_read_record, clinic, "records.medicalrecord", clinic.record.pk)


def test_replaying_an_older_appointment_reason_is_detected(clinic) -> None:  # type: ignore[no-untyped-def]
    old = bytes(_raw("records_appointment", clinic.appointment.pk, "reason"))
    with as_identity(clinic.doctor) as identity:
        services.update_appointment(identity, clinic.appointment, {"reason": "Canary follow-up"})
    _tamper("records_appointment", clinic.appointment.pk, "reason", old)
    _assert_refused(_read_appointment, clinic, "records.appointment", clinic.appointment.pk)


def test_moving_a_record_to_another_patient_is_detected(clinic) -> None:  # type: ignore[no-untyped-def]
    _tamper("records_medicalrecord", clinic.record.pk, "patient_id", clinic.carol.pk)
    _assert_refused(_read_record, clinic, "records.medicalrecord", clinic.record.pk)
    with as_identity(clinic.doctor), pytest.raises(DecryptionError):  # listing Carol's records too
        [r.diagnosis for r in MedicalRecord.objects.filter(patient=clinic.carol)]


@pytest.mark.parametrize(
    ("column", "value"),
    [("provider_id", "other_doctor"), ("record_date", dt.date(2001, 1, 1))],
)
def test_changing_a_records_author_or_date_is_detected(clinic, column, value) -> None:  # type: ignore[no-untyped-def]
    _tamper(
        "records_medicalrecord", clinic.record.pk, column, clinic.other_doctor.pk if value == "other_doctor" else value
    )
    _assert_refused(_read_record, clinic, "records.medicalrecord", clinic.record.pk)


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("status", "completed"),
        ("scheduled_at", dt.datetime(2001, 1, 1, 9, tzinfo=dt.UTC)),
        ("provider_id", "other_doctor"),
        ("patient_id", "carol"),
        ("duration_minutes", 480),
    ],
)
def test_changing_an_appointments_status_time_author_or_patient_is_detected(clinic, column, value) -> None:  # type: ignore[no-untyped-def]
    value = {"other_doctor": clinic.other_doctor.pk, "carol": clinic.carol.pk}.get(value, value)
    _tamper("records_appointment", clinic.appointment.pk, column, value)
    with as_identity(clinic.doctor), pytest.raises(DecryptionError):  # even without reading an encrypted field
        [a.status for a in Appointment.objects.filter(pk=clinic.appointment.pk)]
    _assert_refused(_read_appointment, clinic, "records.appointment", clinic.appointment.pk)


def test_a_tampered_record_answers_a_clear_error_through_the_api(clinic, api) -> None:  # type: ignore[no-untyped-def]
    _tamper("records_medicalrecord", clinic.record.pk, "patient_id", clinic.carol.pk)
    response = api(clinic.doctor).get(f"/api/v1/records/{clinic.record.pk}/")
    assert response.status_code == 500
    assert "integrity" in error_message(response)
    assert b"Canary" not in response.content
