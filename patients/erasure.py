"""Erasing a patient's structured records, for crypto-shredding (``keys shred-patient``).

Called by ``keys.subjects.shred_patient`` (setting NEONPRO_KEYS_SUBJECT_ERASER) inside its
transaction and the system context. Every encrypted field of the patient, their medical
records and their appointments is overwritten with an empty or placeholder value (the rows
stay, so foreign keys, counts and the audit trail keep pointing somewhere); the portal link
and contact consents are removed and the patient is marked inactive. Not erased: who treated
them (care-team memberships, authors of records), dates, and break-glass grants, whose reason
is evidence for the privacy officer. The overwritten ciphertexts remain in dead row versions,
WAL and backups until the field keys they were under are destroyed (docs/keys.md).
"""

from __future__ import annotations

import datetime as dt
import uuid

from patients.models import Patient
from records.models import Appointment, MedicalRecord

ERASED = "[erased]"
ERASED_DATE = dt.date(1900, 1, 1)


def erase_patient_records(patient_id: uuid.UUID, *, dry_run: bool = False) -> dict[str, int]:
    """Overwrite the patient's PHI; return how many rows of each kind were (or would be) erased."""
    patients = Patient._plain.select_for_update().filter(pk=patient_id)
    records = MedicalRecord._plain.select_for_update().filter(patient_id=patient_id)
    appointments = Appointment._plain.select_for_update().filter(patient_id=patient_id)
    counts = {
        "patients.Patient": patients.count(),
        "records.MedicalRecord": records.count(),
        "records.Appointment": appointments.count(),
    }
    if dry_run:
        return counts
    for patient in patients:
        patient.full_name, patient.date_of_birth = ERASED, ERASED_DATE
        patient.mrn = f"ERASED-{patient.pk.hex[:12]}"
        patient.ssn = patient.email = patient.phone = patient.address = None
        patient.contact_by_email = patient.contact_by_sms = patient.active = False
        patient.user = None
        patient.save()
    for record in records:
        record.diagnosis = record.treatment_plan = record.medications = record.allergies = record.notes = ""
        record.lab_results = None
        record.save()
    for appointment in appointments:
        appointment.reason = appointment.notes = ""
        appointment.save()
    return counts
