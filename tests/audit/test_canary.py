"""Canary: register, search and read a patient, then grep every audit column and every log
record of the test for the patient's PHI — zero hits (checklist H6, V7)."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import pytest

from patients.services import get_patient, search_patients
from tests.audit.conftest import audit_rows_as_text, last_event_id
from tests.conftest import as_identity

pytestmark = pytest.mark.django_db

CANARY = {
    "full_name": "Zelda Quokkasson",
    "date_of_birth": dt.date(1961, 7, 4),
    "mrn": "MRN-QUOKKA-77",
    "ssn": "987-65-4320",
    "email": "zelda.quokkasson@canary.example",
    "phone": "+1 (555) 867-5309",
    "address": "42 Quokkasson Lane, Canaryville",
}
NEEDLES = [
    "Zelda",
    "Quokkasson",
    "1961-07-04",
    "QUOKKA-77",
    "987-65-4320",
    "987654320",
    "canary.example",
    "867-5309",
    "8675309",
    "Canaryville",
]


def test_no_phi_reaches_the_audit_log_or_the_logs(
    caplog: pytest.LogCaptureFixture, user_factory: Any, patient_factory: Any, care_team: Any
) -> None:
    caplog.set_level(logging.DEBUG)
    start = last_event_id()
    doctor = user_factory("clinician")
    patient = patient_factory(**CANARY)
    care_team(patient, doctor)

    with as_identity(doctor) as identity:
        assert [p.pk for p in search_patients(identity, field="ssn", value=CANARY["ssn"])] == [patient.pk]
        assert [p.pk for p in search_patients(identity, field="email", value=CANARY["email"])] == [patient.pk]
        assert get_patient(identity, patient.pk).full_name == CANARY["full_name"]

    rows = audit_rows_as_text(start)
    actions = [action for _, action, _ in rows]
    assert {"patient.create", "patient.search", "patient.read"} <= set(actions), actions
    assert actions.count("patient.search") == 2
    haystack = "\n".join(text for _, _, text in rows) + "\n" + caplog.text
    haystack += "\n".join(str(record.args) for record in caplog.records)
    hits = [needle for needle in NEEDLES if needle.lower() in haystack.lower()]
    assert hits == []
    assert str(patient.pk) in haystack  # the events do name the patient, by id
