"""Patient use cases."""

from __future__ import annotations

import datetime as dt

from django.db import transaction

from patients.models import Patient


def register_patient(
    *,
    full_name: str,
    date_of_birth: dt.date,
    mrn: str,
    ssn: str | None = None,
    email: str | None = None,
    phone: str | None = None,
    address: str | None = None,
) -> Patient:
    """Validate and store a new patient. Raises ValidationError naming the bad fields."""
    patient = Patient(
        full_name=full_name,
        date_of_birth=date_of_birth,
        mrn=mrn,
        ssn=ssn,
        email=email,
        phone=phone,
        address=address,
    )
    patient.full_clean()
    with transaction.atomic():
        patient.save(force_insert=True)
    return patient
