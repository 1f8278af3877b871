"""Row-level security the planner understands, and the indexes the lists and the policies read.

* ``patient_created_desc`` (created_at DESC, id DESC): the patient list's keyset order.
* ``careteam_clinician_active`` (clinician, patient, starts_on, ends_on) replaces
  ``careteam_clinician_patient`` (same leading columns): a clinician's active care team from
  the index alone.
* ``grant_clinician_active`` (clinician, expires_at, patient) WHERE ended_at IS NULL: a
  clinician's open, unexpired grants.
* The three tables' policies become ``rls.planner_policies()`` (same rules, every branch
  searchable in an index; neonpro/security/rls.py), in one transaction.

Indexes are built and dropped CONCURRENTLY (``atomic = False``): writes to a live table go on.
Reversible: the old index and the first policies come back.
"""

from django.db import migrations, models

from neonpro.security.rls import (
    PATIENTS_TABLES,
    AddIndexOnline,
    RemoveIndexOnline,
    ReplacePolicies,
    first_policies,
    planner_policies,
)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("patients", "0006_search_token_indexes"),
        # The policies being replaced are the ones security 0001 installed.
        ("security", "0001_signed_identity"),
    ]

    operations = [
        AddIndexOnline(
            model_name="patient",
            index=models.Index(fields=["-created_at", "-id"], name="patient_created_desc"),
        ),
        AddIndexOnline(
            model_name="careteammembership",
            index=models.Index(
                fields=["clinician", "patient", "starts_on", "ends_on"], name="careteam_clinician_active"
            ),
        ),
        AddIndexOnline(
            model_name="emergencyaccessgrant",
            index=models.Index(
                fields=["clinician", "expires_at", "patient"],
                condition=models.Q(ended_at__isnull=True),
                name="grant_clinician_active",
            ),
        ),
        ReplacePolicies(PATIENTS_TABLES, planner_policies(), first_policies()),
        RemoveIndexOnline(model_name="careteammembership", name="careteam_clinician_patient"),
    ]
