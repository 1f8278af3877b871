"""Row-level security on every patients table (ENABLE + FORCE, one policy per command)."""

from django.db import migrations

from neonpro.security.rls import ProtectTable
from neonpro.security.rls_unsigned import CARE_TEAM, GRANTED, IS_SYSTEM, PATIENT, ROLE, UID

PATIENT_READ = (
    f"{IS_SYSTEM} OR ({ROLE} = 'patient' AND (id = {PATIENT} OR user_id = {UID})) "
    f"OR ({ROLE} = 'clinician' AND (id IN {CARE_TEAM} OR id IN {GRANTED}))"
)
PATIENT_WRITE = f"{IS_SYSTEM} OR ({ROLE} = 'patient' AND id = {PATIENT}) OR ({ROLE} = 'clinician' AND id IN {CARE_TEAM})"
LINKED_READ = (
    f"{ROLE} IN ('system', 'admin') OR ({ROLE} = 'clinician' AND clinician_id = {UID}) "
    f"OR ({ROLE} = 'patient' AND patient_id = {PATIENT})"
)
ADMINISTERED = f"{ROLE} IN ('system', 'admin')"
GRANT_CREATE = (
    f"{IS_SYSTEM} OR ({ROLE} = 'clinician' AND clinician_id = {UID} AND ended_at IS NULL "
    "AND granted_at BETWEEN now() - interval '1 minute' AND now() + interval '1 minute' "
    "AND expires_at <= granted_at + interval '24 hours')"
)


class Migration(migrations.Migration):
    dependencies = [("patients", "0002_careteam_emergency_access")]

    operations = [
        ProtectTable(
            table="patients_patient",
            policies={
                "select": (PATIENT_READ, None),
                "insert": (None, IS_SYSTEM),
                "update": (PATIENT_WRITE, PATIENT_WRITE),
                "delete": (IS_SYSTEM, None),
            },
        ),
        ProtectTable(
            table="patients_careteammembership",
            policies={
                "select": (LINKED_READ, None),
                "insert": (None, ADMINISTERED),
                "update": (ADMINISTERED, ADMINISTERED),
                "delete": (ADMINISTERED, None),
            },
        ),
        ProtectTable(
            table="patients_emergencyaccessgrant",
            policies={
                "select": (LINKED_READ, None),
                "insert": (None, GRANT_CREATE),
                "update": (IS_SYSTEM, IS_SYSTEM),
                "delete": (IS_SYSTEM, None),
            },
        ),
    ]
