"""Medical records and appointments: clinical content encrypted, rows scoped by patient.

Both are sealed rows (``keys.integrity``): every encrypted value is bound to the row, its
patient and its version, and a row seal covers the plain columns that link it (patient,
provider, dates, status). Each saved state of a medical record is kept, encrypted, in the
append-only ``MedicalRecordRevision``.
"""

from __future__ import annotations

import datetime as dt
import uuid

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from keys.fields import EncryptedJSONField, EncryptedTextField
from keys.integrity import RowIntegrity, SealedRow
from neonpro.security.context import Identity
from neonpro.security.scoping import ScopedManager
from patients.models import Patient, readable_patient_ids


class MedicalRecord(SealedRow):
    row_integrity = RowIntegrity(owner="patient", sealed=("provider", "record_date"))

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # db_index=False where a composite index (Meta.indexes) already starts with the column.
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="records", db_index=False)
    provider = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="authored_records")
    record_date = models.DateField(default=timezone.localdate)
    diagnosis = EncryptedTextField(blank=True, default="")
    treatment_plan = EncryptedTextField(blank=True, default="")
    medications = EncryptedTextField(blank=True, default="")
    allergies = EncryptedTextField(blank=True, default="", null=True)
    lab_results = EncryptedJSONField(null=True, blank=True)
    notes = EncryptedTextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    # Default manager: scoped to the caller. Base manager (Django internals): plain, with
    # PostgreSQL RLS underneath.
    objects = ScopedManager()
    _plain = models.Manager()

    class Meta:
        base_manager_name = "_plain"
        # A patient's timeline in its keyset order (newest first).
        indexes = [models.Index(fields=["patient", "-record_date", "-id"], name="record_patient_timeline")]

    def __str__(self) -> str:
        return f"Medical record {self.pk}"

    def __repr__(self) -> str:
        return f"<MedicalRecord {self.pk}>"

    @classmethod
    def scope_filter(cls, identity: Identity) -> Q:
        return readable_patient_ids(identity, "records:read")


class MedicalRecordRevision(SealedRow):
    """One saved state of a medical record (who saved it, when, at which version): append-only
    (a trigger refuses DELETE, TRUNCATE and any UPDATE but re-encryption's, which keeps every
    plain column and raises the row version), encrypted and scoped like the record."""

    class Action(models.TextChoices):
        CREATE = "create", "Created"
        UPDATE = "update", "Amended"
        BASELINE = "baseline", "State before the first recorded amendment"

    row_integrity = RowIntegrity(
        owner="patient",
        sealed=(
            "record",
            "provider",
            "record_version",
            "action",
            "changed_by",
            "changed_at",
            "changed_fields",
            "record_date",
        ),
    )

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    record = models.ForeignKey(MedicalRecord, on_delete=models.PROTECT, related_name="revisions", db_index=False)
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="+", db_index=False)
    provider = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", db_index=False)
    record_version = models.PositiveBigIntegerField(help_text="The record's row version this state had.")
    action = models.CharField(max_length=16, choices=Action.choices)
    changed_by = models.UUIDField(help_text="Id of the user (or the system actor) who saved this state.")
    changed_at = models.DateTimeField(default=timezone.now)
    changed_fields = models.JSONField(default=list, help_text="Names of the fields changed; never values.")
    record_date = models.DateField()
    diagnosis = EncryptedTextField(blank=True, default="")
    treatment_plan = EncryptedTextField(blank=True, default="")
    medications = EncryptedTextField(blank=True, default="")
    allergies = EncryptedTextField(blank=True, default="", null=True)
    lab_results = EncryptedJSONField(null=True, blank=True)
    notes = EncryptedTextField(blank=True, default="")

    objects = ScopedManager()
    _plain = models.Manager()

    class Meta:
        base_manager_name = "_plain"
        constraints = [
            models.UniqueConstraint(fields=["record", "record_version"], name="record_revision_unique_version"),
            models.CheckConstraint(
                condition=Q(action__in=["create", "update", "baseline"]), name="record_revision_action_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"Medical record revision {self.pk}"

    def __repr__(self) -> str:
        return f"<MedicalRecordRevision {self.pk}>"

    @classmethod
    def scope_filter(cls, identity: Identity) -> Q:
        return readable_patient_ids(identity, "records:read")


class Appointment(SealedRow):
    row_integrity = RowIntegrity(owner="patient", sealed=("provider", "scheduled_at", "duration_minutes", "status"))

    class Status(models.TextChoices):
        REQUESTED = "requested", "Requested"
        CONFIRMED = "confirmed", "Confirmed"
        CANCELLED = "cancelled", "Cancelled"
        COMPLETED = "completed", "Completed"
        NO_SHOW = "no_show", "No-show"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="appointments", db_index=False)
    provider = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="appointments", db_index=False
    )
    scheduled_at = models.DateTimeField()
    duration_minutes = models.PositiveSmallIntegerField(
        default=30, validators=[MinValueValidator(5), MaxValueValidator(8 * 60)]
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.REQUESTED)
    reason = EncryptedTextField(blank=True, default="")
    notes = EncryptedTextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    # Default manager: scoped to the caller. Base manager (Django internals): plain, with
    # PostgreSQL RLS underneath.
    objects = ScopedManager()
    _plain = models.Manager()

    class Meta:
        base_manager_name = "_plain"
        indexes = [
            # Keyset orders of a patient's and a provider's appointments.
            models.Index(fields=["patient", "scheduled_at", "id"], name="appointment_patient_time_id"),
            models.Index(fields=["provider", "scheduled_at", "id"], name="appointment_provider_time_id"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["requested", "confirmed", "cancelled", "completed", "no_show"]),
                name="appointment_status_valid",
            ),
            models.CheckConstraint(
                condition=Q(duration_minutes__gte=5, duration_minutes__lte=480), name="appointment_duration_range"
            ),
        ]

    def __str__(self) -> str:
        return f"Appointment {self.pk}"

    def __repr__(self) -> str:
        return f"<Appointment {self.pk}>"

    def ends_at(self) -> dt.datetime:
        return self.scheduled_at + dt.timedelta(minutes=self.duration_minutes)

    @classmethod
    def scope_filter(cls, identity: Identity) -> Q:
        return readable_patient_ids(identity, "appointments:read")
