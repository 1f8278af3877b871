"""Sealed clinical rows (keys.integrity): a version and a row seal on records and appointments,
and the append-only, encrypted history of medical records (RLS like the records; a trigger
refuses DELETE, TRUNCATE and every UPDATE but re-encryption's).

Existing rows keep version 0 and no seal (legacy) until `keys reencrypt` upgrades them.
"""

import django.db.models.deletion
import django.db.models.manager
import django.utils.timezone
import keys.fields
import uuid
from django.conf import settings
from django.db import migrations, models

from neonpro.security.rls import CARE_TEAM, GRANTED, IS_SYSTEM, PATIENT, ROLE, UID, PostgresOnlySQL, ProtectTable

REVISION = "records_medicalrecordrevision"
READ = (
    f"{IS_SYSTEM} OR ({ROLE} = 'patient' AND patient_id = {PATIENT}) "
    f"OR ({ROLE} = 'clinician' AND (patient_id IN {CARE_TEAM} OR patient_id IN {GRANTED}))"
)
# A revision names the record's own patient, and a clinician records only their own edits.
REVISION_CREATE = (
    "patient_id = (SELECT r.patient_id FROM records_medicalrecord r WHERE r.id = record_id) AND ("  # noqa: S608
    f"{IS_SYSTEM} OR ({ROLE} = 'clinician' AND changed_by = {UID} AND patient_id IN {CARE_TEAM}))"
)
HISTORY_COLUMNS = (
    "id, record_id, patient_id, provider_id, record_version, action, changed_by, changed_at, changed_fields, record_date"
)
_NEW = ", ".join(f"NEW.{c.strip()}" for c in HISTORY_COLUMNS.split(","))
_OLD = ", ".join(f"OLD.{c.strip()}" for c in HISTORY_COLUMNS.split(","))
# Append-only for everyone, the owner included. The one UPDATE let through is re-encryption's:
# the same revision, every plain column unchanged, a higher row version (its values and seal
# re-sealed under newer keys; keys.integrity binds them to that version).
APPEND_ONLY = f"""
CREATE OR REPLACE FUNCTION neonpro_records_history_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND ROW({_NEW}) IS NOT DISTINCT FROM ROW({_OLD})
            AND NEW.row_version > OLD.row_version THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'medical record history is append-only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
DROP TRIGGER IF EXISTS record_history_append_only_rows ON {REVISION};
CREATE TRIGGER record_history_append_only_rows BEFORE UPDATE OR DELETE ON {REVISION}
    FOR EACH ROW EXECUTE FUNCTION neonpro_records_history_append_only();
DROP TRIGGER IF EXISTS record_history_append_only_truncate ON {REVISION};
CREATE TRIGGER record_history_append_only_truncate BEFORE TRUNCATE ON {REVISION}
    FOR EACH STATEMENT EXECUTE FUNCTION neonpro_records_history_append_only();
"""
APPEND_ONLY_REVERSE = f"""
DROP TRIGGER IF EXISTS record_history_append_only_rows ON {REVISION};
DROP TRIGGER IF EXISTS record_history_append_only_truncate ON {REVISION};
DROP FUNCTION IF EXISTS neonpro_records_history_append_only();
"""


class Migration(migrations.Migration):
    dependencies = [
        ("patients", "0005_break_glass_review"),
        ("records", "0004_patients_cancel_only_open_appointments"),
        # Its policies read the signed identity, whose functions security 0001 creates.
        ("security", "0001_signed_identity"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="appointment",
            name="row_seal",
            field=models.BinaryField(help_text="HMAC over the row's id, version and linked columns.", null=True),
        ),
        migrations.AddField(
            model_name="appointment",
            name="row_version",
            field=models.PositiveBigIntegerField(
                default=0, editable=False, help_text="Incremented by every save; bound into each encrypted value."
            ),
        ),
        migrations.AddField(
            model_name="medicalrecord",
            name="row_seal",
            field=models.BinaryField(help_text="HMAC over the row's id, version and linked columns.", null=True),
        ),
        migrations.AddField(
            model_name="medicalrecord",
            name="row_version",
            field=models.PositiveBigIntegerField(
                default=0, editable=False, help_text="Incremented by every save; bound into each encrypted value."
            ),
        ),
        migrations.CreateModel(
            name="MedicalRecordRevision",
            fields=[
                (
                    "row_version",
                    models.PositiveBigIntegerField(
                        default=0,
                        editable=False,
                        help_text="Incremented by every save; bound into each encrypted value.",
                    ),
                ),
                (
                    "row_seal",
                    models.BinaryField(help_text="HMAC over the row's id, version and linked columns.", null=True),
                ),
                ("id", models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                (
                    "record_version",
                    models.PositiveBigIntegerField(help_text="The record's row version this state had."),
                ),
                (
                    "action",
                    models.CharField(
                        choices=[
                            ("create", "Created"),
                            ("update", "Amended"),
                            ("baseline", "State before the first recorded amendment"),
                        ],
                        max_length=16,
                    ),
                ),
                (
                    "changed_by",
                    models.UUIDField(help_text="Id of the user (or the system actor) who saved this state."),
                ),
                ("changed_at", models.DateTimeField(default=django.utils.timezone.now)),
                (
                    "changed_fields",
                    models.JSONField(default=list, help_text="Names of the fields changed; never values."),
                ),
                ("record_date", models.DateField()),
                ("diagnosis", keys.fields.EncryptedTextField(blank=True, default="")),
                ("treatment_plan", keys.fields.EncryptedTextField(blank=True, default="")),
                ("medications", keys.fields.EncryptedTextField(blank=True, default="")),
                ("lab_results", keys.fields.EncryptedJSONField(blank=True, null=True)),
                ("notes", keys.fields.EncryptedTextField(blank=True, default="")),
                (
                    "patient",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="patients.patient",
                    ),
                ),
                (
                    "provider",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "record",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="revisions",
                        to="records.medicalrecord",
                    ),
                ),
            ],
            options={
                "base_manager_name": "_plain",
                "constraints": [
                    models.UniqueConstraint(fields=("record", "record_version"), name="record_revision_unique_version"),
                    models.CheckConstraint(
                        condition=models.Q(("action__in", ["create", "update", "baseline"])),
                        name="record_revision_action_valid",
                    ),
                ],
            },
            managers=[
                ("objects", django.db.models.manager.Manager()),
                ("_plain", django.db.models.manager.Manager()),
            ],
        ),
        ProtectTable(
            table=REVISION,
            policies={
                "select": (READ, None),
                "insert": (None, REVISION_CREATE),
                "update": (IS_SYSTEM, IS_SYSTEM),  # re-encryption only (see the trigger)
                "delete": (None, None),
            },
        ),
        PostgresOnlySQL(APPEND_ONLY, APPEND_ONLY_REVERSE),
    ]
