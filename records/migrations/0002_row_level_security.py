"""Row-level security on medical records and appointments (ENABLE + FORCE, per-command policies)."""

from django.db import migrations

from neonpro.security.rls import ProtectTable
from neonpro.security.rls_unsigned import CARE_TEAM, GRANTED, IS_SYSTEM, PATIENT, ROLE, UID

READ = (
    f"{IS_SYSTEM} OR ({ROLE} = 'patient' AND patient_id = {PATIENT}) "
    f"OR ({ROLE} = 'clinician' AND (patient_id IN {CARE_TEAM} OR patient_id IN {GRANTED}))"
)
CLINICAL_WRITE = f"{IS_SYSTEM} OR ({ROLE} = 'clinician' AND patient_id IN {CARE_TEAM})"
RECORD_CREATE = f"{IS_SYSTEM} OR ({ROLE} = 'clinician' AND provider_id = {UID} AND patient_id IN {CARE_TEAM})"
APPOINTMENT_CREATE = f"{CLINICAL_WRITE} OR ({ROLE} = 'patient' AND patient_id = {PATIENT} AND status = 'requested')"
APPOINTMENT_UPDATE = f"{CLINICAL_WRITE} OR ({ROLE} = 'patient' AND patient_id = {PATIENT})"
APPOINTMENT_UPDATE_CHECK = (
    f"{CLINICAL_WRITE} OR ({ROLE} = 'patient' AND patient_id = {PATIENT} AND status IN ('requested', 'cancelled'))"
)


class Migration(migrations.Migration):
    dependencies = [("records", "0001_initial"), ("patients", "0003_row_level_security")]

    operations = [
        ProtectTable(
            table="records_medicalrecord",
            policies={
                "select": (READ, None),
                "insert": (None, RECORD_CREATE),
                "update": (CLINICAL_WRITE, CLINICAL_WRITE),
                "delete": (IS_SYSTEM, None),
            },
        ),
        ProtectTable(
            table="records_appointment",
            policies={
                "select": (READ, None),
                "insert": (None, APPOINTMENT_CREATE),
                "update": (APPOINTMENT_UPDATE, APPOINTMENT_UPDATE_CHECK),
                "delete": (IS_SYSTEM, None),
            },
        ),
    ]
