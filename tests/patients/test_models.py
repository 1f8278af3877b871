"""Model text representations carry ids, never PHI."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from patients.models import EmergencyAccessGrant
from records.models import Appointment, MedicalRecord

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("system")]


def test_str_and_repr_show_no_phi(world) -> None:  # type: ignore[no-untyped-def]
    record = MedicalRecord.objects.create(patient=world.alice, provider=world.doctor, diagnosis="Canary diagnosis")
    appointment = Appointment.objects.create(
        patient=world.alice, provider=world.doctor, scheduled_at=timezone.now(), reason="Canary reason"
    )
    grant = EmergencyAccessGrant.objects.create(
        clinician=world.outsider,
        patient=world.bob,
        reason="Canary emergency reason text",
        expires_at=timezone.now() + dt.timedelta(hours=1),
    )
    for obj in (world.alice, record, appointment, grant, world.alice.care_team.get()):
        for text in (str(obj), repr(obj)):
            assert str(obj.pk) in text
            for phi in ("Canary", world.alice.ssn, world.alice.email, "diagnosis"):
                assert phi not in text, (type(obj).__name__, text)
