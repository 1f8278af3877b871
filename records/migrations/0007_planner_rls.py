"""Row-level security the planner understands (records, appointments, record history), and
the indexes of their keyset lists.

* ``record_patient_timeline`` (patient, record_date DESC, id DESC) replaces
  ``record_patient_date`` (patient, record_date): a patient's timeline in its keyset order.
* ``appointment_patient_time_id`` / ``appointment_provider_time_id`` (patient or provider,
  scheduled_at, id) replace ``appointment_patient_time`` / ``appointment_provider_time``.
* The three tables' policies become ``rls.planner_policies()`` (same rules, every branch
  searchable in an index; neonpro/security/rls.py), in one transaction.

Indexes are built and dropped CONCURRENTLY (``atomic = False``); the new ones exist before the
old ones go. Reversible: the old indexes and the first policies come back.
"""

from django.db import migrations, models

from neonpro.security.rls import (
    RECORDS_TABLES,
    AddIndexOnline,
    RemoveIndexOnline,
    ReplacePolicies,
    first_policies,
    planner_policies,
)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("records", "0006_history_refuses_every_delete"),
        # The policies read the care-team and grant indexes patients 0007 builds.
        ("patients", "0007_planner_rls"),
    ]

    operations = [
        AddIndexOnline(
            model_name="medicalrecord",
            index=models.Index(fields=["patient", "-record_date", "-id"], name="record_patient_timeline"),
        ),
        AddIndexOnline(
            model_name="appointment",
            index=models.Index(fields=["patient", "scheduled_at", "id"], name="appointment_patient_time_id"),
        ),
        AddIndexOnline(
            model_name="appointment",
            index=models.Index(fields=["provider", "scheduled_at", "id"], name="appointment_provider_time_id"),
        ),
        ReplacePolicies(RECORDS_TABLES, planner_policies(), first_policies()),
        RemoveIndexOnline(model_name="medicalrecord", name="record_patient_date"),
        RemoveIndexOnline(model_name="appointment", name="appointment_patient_time"),
        RemoveIndexOnline(model_name="appointment", name="appointment_provider_time"),
    ]
