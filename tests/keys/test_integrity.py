"""keys.integrity when a save fails or a copy goes stale: the instance is left as it was, so
the caller can fix it and save again; a refreshed copy is the current, checked row; a new
row cannot be given another row's ciphertext. As the application role, on sealed records."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import IntegrityError, connection

from keys.exceptions import RowIntegrityError
from keys.sealing import ROW_BINDING, ROW_CONTEXT
from neonpro.audit.models import AuditEvent
from neonpro.security.context import system_context
from records import services
from records.models import MedicalRecord
from tests.conftest import as_identity

pytestmark = pytest.mark.django_db
TABLE = "records_medicalrecord"


@pytest.fixture
def clinic(user_factory, patient_factory, care_team) -> Any:  # type: ignore[no-untyped-def]
    class Clinic:
        pass

    c = Clinic()
    c.doctor = user_factory("clinician", username="dr.integrity")
    c.other = user_factory("clinician", username="dr.other.integrity")
    c.alice = patient_factory(full_name="Alice Integrity")
    care_team(c.alice, c.doctor)
    with as_identity(c.doctor) as identity:
        c.record = services.create_record(identity, c.alice.pk, {"diagnosis": "Asthma", "notes": "first"})
    return c


def _raw(pk: Any, column: str) -> Any:
    with system_context("test: read raw"), connection.cursor() as cursor:
        cursor.execute(f'SELECT "{column}" FROM {TABLE} WHERE id = %s', [pk])
        value = cursor.fetchone()[0]
    return bytes(value) if isinstance(value, memoryview) else value


def _load(pk: Any) -> MedicalRecord:
    with system_context("test: load"):
        record = MedicalRecord.objects.get(pk=pk)
        record.diagnosis  # noqa: B018 - opened, as a view would
        return record


def test_a_failed_update_leaves_the_instance_as_loaded_so_a_corrected_save_succeeds(clinic) -> None:  # type: ignore[no-untyped-def]
    record = _load(clinic.record.pk)
    before = {k: record.__dict__[k] for k in ("row_version", "row_seal", ROW_BINDING, ROW_CONTEXT)}

    with system_context("test"):
        record.provider_id = None  # a NOT NULL sealed column: the UPDATE itself fails
        record.notes = "second opinion"
        with pytest.raises(IntegrityError):
            record.save()
        # Nothing of the failed attempt stays on the instance: not the next version, not its
        # seal, not the binding its values would have been sealed for.
        assert {k: record.__dict__[k] for k in before} == before
        assert _raw(record.pk, "row_version") == 1

        record.provider_id = clinic.doctor.pk
        record.save()  # the same copy, corrected: not refused as stale

    assert _raw(record.pk, "row_version") == 2
    saved = _load(record.pk)
    assert (saved.diagnosis, saved.notes, saved.provider_id) == ("Asthma", "second opinion", clinic.doctor.pk)


def test_a_new_row_cannot_take_another_rows_ciphertext_and_stays_unsaved(clinic) -> None:  # type: ignore[no-untyped-def]
    stolen = _raw(clinic.record.pk, "diagnosis")
    with system_context("test"):
        copy = MedicalRecord(patient=clinic.alice, provider=clinic.doctor)
        copy.diagnosis = stolen
        with pytest.raises(TypeError, match=r"records\.medicalrecord\.diagnosis takes a str, not bytes"):
            copy.save()
        assert copy._state.adding and copy.row_version == 0 and copy.row_seal is None
        assert ROW_BINDING not in copy.__dict__ and ROW_CONTEXT not in copy.__dict__
        assert not MedicalRecord.objects.filter(pk=copy.pk).exists()

        copy.diagnosis = "Asthma (copied by hand)"
        copy.save()
    assert _raw(copy.pk, "row_version") == 1
    assert _load(copy.pk).diagnosis == "Asthma (copied by hand)"
    assert _raw(copy.pk, "diagnosis") != stolen


def test_refresh_from_db_brings_a_stale_copy_to_the_current_checked_row(clinic) -> None:  # type: ignore[no-untyped-def]
    stale, fresh = _load(clinic.record.pk), _load(clinic.record.pk)
    with system_context("test"):
        fresh.diagnosis = "Asthma, controlled"
        fresh.save()

        stale.refresh_from_db()
        assert (stale.row_version, stale.diagnosis) == (2, "Asthma, controlled")
        stale.notes = "after the refresh"
        stale.save()
    saved = _load(clinic.record.pk)
    assert (saved.row_version, saved.diagnosis, saved.notes) == (3, "Asthma, controlled", "after the refresh")


def test_refreshing_a_tampered_row_is_refused_and_audited(clinic) -> None:  # type: ignore[no-untyped-def]
    record = _load(clinic.record.pk)
    with system_context("test: attacker"), connection.cursor() as cursor:
        cursor.execute(f"UPDATE {TABLE} SET provider_id = %s WHERE id = %s", [clinic.other.pk, record.pk])

    with system_context("test"), pytest.raises(RowIntegrityError, match="seal does not match") as refused:
        record.refresh_from_db()

    assert str(record.pk) in str(refused.value) and "Asthma" not in str(refused.value)
    assert record.provider_id == clinic.doctor.pk  # the tampered row never reached the instance
    event = AuditEvent.objects.get(action="integrity.failed", resource_id=record.pk)
    assert event.details["check"] == "seal" and event.details["code"] == "seal_mismatch"


def test_a_row_loaded_without_its_version_is_refused_clearly_not_reported_as_tampered(clinic) -> None:  # type: ignore[no-untyped-def]
    from keys.exceptions import AuthenticationError, DecryptionError

    before = AuditEvent.objects.filter(action="integrity.failed").count()
    with system_context("test: partial load"):
        partial = MedicalRecord.objects.only("id", "diagnosis").get(pk=clinic.record.pk)
        with pytest.raises(DecryptionError, match="loaded without 'row_version'") as refused:
            partial.diagnosis  # noqa: B018
        whole = MedicalRecord.objects.only("id", "diagnosis", "row_version", "patient").get(pk=clinic.record.pk)

        assert not isinstance(refused.value, AuthenticationError) and "Asthma" not in str(refused.value)
        assert whole.diagnosis == "Asthma"
    assert AuditEvent.objects.filter(action="integrity.failed").count() == before
