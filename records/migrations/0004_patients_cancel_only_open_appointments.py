"""Patients may cancel only requested or confirmed appointments (not rewrite finished ones)."""

from django.db import migrations

from neonpro.security.rls import PostgresOnlySQL, policy_statements
from neonpro.security.rls_unsigned import CARE_TEAM, GRANTED, IS_SYSTEM, PATIENT, ROLE

READ = (
    f"{IS_SYSTEM} OR ({ROLE} = 'patient' AND patient_id = {PATIENT}) "
    f"OR ({ROLE} = 'clinician' AND (patient_id IN {CARE_TEAM} OR patient_id IN {GRANTED}))"
)
CLINICAL_WRITE = f"{IS_SYSTEM} OR ({ROLE} = 'clinician' AND patient_id IN {CARE_TEAM})"
APPOINTMENT_CREATE = f"{CLINICAL_WRITE} OR ({ROLE} = 'patient' AND patient_id = {PATIENT} AND status = 'requested')"
APPOINTMENT_UPDATE = (
    f"{CLINICAL_WRITE} OR ({ROLE} = 'patient' AND patient_id = {PATIENT} AND status IN ('requested', 'confirmed'))"
)
PREVIOUS_UPDATE = f"{CLINICAL_WRITE} OR ({ROLE} = 'patient' AND patient_id = {PATIENT})"
APPOINTMENT_UPDATE_CHECK = (
    f"{CLINICAL_WRITE} OR ({ROLE} = 'patient' AND patient_id = {PATIENT} AND status IN ('requested', 'cancelled'))"
)




def _policies(update_using: str) -> list[str]:
    return policy_statements(
        "records_appointment",
        {
            "select": (READ, None),
            "insert": (None, APPOINTMENT_CREATE),
            "update": (update_using, APPOINTMENT_UPDATE_CHECK),
            "delete": (IS_SYSTEM, None),
        },
    )


class Migration(migrations.Migration):
    dependencies = [("records", "0003_drop_redundant_fk_indexes")]

    # Reversing restores the previous policies (never an unprotected table).
    operations = [PostgresOnlySQL(_policies(APPOINTMENT_UPDATE), _policies(PREVIOUS_UPDATE))]
