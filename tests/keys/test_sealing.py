"""keys.sealing for sealed rows: a value opens only with the row's id, owner and version it was
sealed for; what is missing or malformed among them is a DecryptionError naming the value,
never a ValueError, and a malformed value of a sealed row is reported like a tampered one."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.db import connection

from keys.envelope import HEADER, HEADER_SIZE
from keys.exceptions import AuthenticationError, DecryptionError, UnknownKeyError
from neonpro.audit.models import AuditEvent
from neonpro.security.context import system_context
from records import services
from records.models import MedicalRecord
from tests.conftest import as_identity

pytestmark = pytest.mark.django_db
TABLE = "records_medicalrecord"
DIAGNOSIS = "Canary diagnosis: sealed"


@pytest.fixture
def clinic(user_factory, patient_factory, care_team) -> Any:  # type: ignore[no-untyped-def]
    class Clinic:
        pass

    c = Clinic()
    c.doctor = user_factory("clinician", username="dr.sealing")
    c.alice = patient_factory(full_name="Alice Sealing")
    c.bob = patient_factory(full_name="Bob Sealing")
    care_team(c.alice, c.doctor)
    with as_identity(c.doctor) as identity:
        c.record = services.create_record(identity, c.alice.pk, {"diagnosis": DIAGNOSIS})
    return c


def _stored(pk: Any) -> bytes:
    with system_context("test: read raw"), connection.cursor() as cursor:
        cursor.execute(f"SELECT diagnosis FROM {TABLE} WHERE id = %s", [pk])
        return bytes(cursor.fetchone()[0])


def test_a_sealed_rows_value_needs_its_owner_and_version_to_open(clinic) -> None:  # type: ignore[no-untyped-def]
    field = MedicalRecord._meta.get_field("diagnosis")
    pk, stored = clinic.record.pk, _stored(clinic.record.pk)
    row = {"id": pk, "row_version": 1}

    with pytest.raises(DecryptionError, match="has no owner") as missing:
        field.open_value(dict(row), stored)
    with pytest.raises(DecryptionError, match="owner is not a UUID") as malformed:
        field.open_value({**row, "patient_id": "patient-7"}, stored)
    for error in (missing.value, malformed.value):
        assert "cannot decrypt records.medicalrecord.diagnosis:" in str(error) and "Canary" not in str(error)

    assert field.open_value({**row, "patient_id": str(clinic.alice.pk)}, stored) == DIAGNOSIS
    for wrong in (
        {**row, "patient_id": clinic.bob.pk},  # another patient's
        {**row, "row_version": 2, "patient_id": clinic.alice.pk},  # another version
        {"id": pk, "row_version": 0, "patient_id": clinic.alice.pk},  # the legacy context: not what it was sealed for
    ):
        with pytest.raises(AuthenticationError):
            field.open_value(wrong, stored)
    with pytest.raises(DecryptionError, match="loaded without 'row_version'") as unversioned:
        field.open_value({"id": pk, "patient_id": clinic.alice.pk}, stored)  # only()/defer() left it out
    assert not isinstance(unversioned.value, AuthenticationError)


def test_a_value_naming_an_unknown_key_is_an_integrity_failure_of_its_row(clinic) -> None:  # type: ignore[no-untyped-def]
    stored = _stored(clinic.record.pk)
    unknown = 2**31 - 7
    forged = HEADER.pack(stored[0], unknown) + stored[HEADER_SIZE:]  # envelope-shaped: the CHECK lets it in
    with system_context("test: attacker"), connection.cursor() as cursor:
        cursor.execute(f"UPDATE {TABLE} SET diagnosis = %s WHERE id = %s", [forged, clinic.record.pk])

    with as_identity(clinic.doctor) as identity:
        record = services.get_record(identity, clinic.record.pk)
        with pytest.raises(UnknownKeyError) as refused:
            record.diagnosis  # noqa: B018

    assert str(clinic.record.pk) in str(refused.value) and "Canary" not in str(refused.value)
    event = AuditEvent.objects.get(action="integrity.failed", resource_id=clinic.record.pk)
    assert event.resource_type == "records.medicalrecord" and event.outcome == "error"
    assert event.details == {"check": "value", "code": "UnknownKeyError", "key_id": unknown}


def test_a_row_without_a_uuid_primary_key_cannot_seal_or_open(clinic) -> None:  # type: ignore[no-untyped-def]
    field = MedicalRecord._meta.get_field("diagnosis")
    with pytest.raises(DecryptionError, match="no primary key"):
        field.seal_value(DIAGNOSIS, None)
    with pytest.raises(DecryptionError, match="primary key is not a UUID"):
        field.seal_value(DIAGNOSIS, "record-7", {"row_version": 1, "patient_id": clinic.alice.pk})
    # A row not loaded from the database is sealed for its current owner and version.
    pk = uuid.uuid4()
    data = {"id": pk, "row_version": 4, "patient_id": clinic.alice.pk}
    token = field.seal_value(DIAGNOSIS, pk, dict(data))
    assert field.open_value(dict(data), token) == DIAGNOSIS
    with pytest.raises(AuthenticationError):
        field.open_value({**data, "row_version": 3}, token)
