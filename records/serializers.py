"""Record and appointment API shapes: validation only."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from neonpro.security.serializers import StrictSerializer
from records.models import Appointment


class _NamedSerializer(serializers.Serializer[Any]):
    # Names the row's patient and provider from the ``names`` every view passes in the context
    # (records.services.names_for: only what the caller may see); ``null`` when unknown.

    @extend_schema_field(serializers.CharField(allow_null=True, help_text="The patient's full name."))
    def get_patient_name(self, row: Any) -> str | None:
        return self.context["names"].patients.get(row.patient_id)  # type: ignore[no-any-return]

    @extend_schema_field(serializers.CharField(allow_null=True, help_text="The clinician's display name."))
    def get_provider_name(self, row: Any) -> str | None:
        return self.context["names"].clinicians.get(row.provider_id)  # type: ignore[no-any-return]


class RecordSerializer(_NamedSerializer):
    """A medical record, naming its patient and its author."""

    id = serializers.UUIDField(read_only=True)
    patient = serializers.UUIDField(source="patient_id", read_only=True)
    patient_name = serializers.SerializerMethodField()
    provider = serializers.UUIDField(source="provider_id", read_only=True)
    provider_name = serializers.SerializerMethodField()
    record_date = serializers.DateField(read_only=True)
    diagnosis = serializers.CharField(read_only=True)
    treatment_plan = serializers.CharField(read_only=True)
    medications = serializers.CharField(read_only=True)
    allergies = serializers.CharField(
        read_only=True, allow_null=True, help_text="null on records written before allergies were recorded."
    )
    lab_results = serializers.JSONField(read_only=True, allow_null=True)
    notes = serializers.CharField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)


class RecordWriteSerializer(StrictSerializer):
    record_date = serializers.DateField(required=False)
    diagnosis = serializers.CharField(required=False, allow_blank=True, max_length=20000)
    treatment_plan = serializers.CharField(required=False, allow_blank=True, max_length=20000)
    medications = serializers.CharField(required=False, allow_blank=True, max_length=20000)
    allergies = serializers.CharField(required=False, allow_blank=True, max_length=20000)
    lab_results = serializers.JSONField(required=False, allow_null=True)
    notes = serializers.CharField(required=False, allow_blank=True, max_length=20000)


class AppointmentSerializer(_NamedSerializer):
    """An appointment, naming its patient and its clinician."""

    id = serializers.UUIDField(read_only=True)
    patient = serializers.UUIDField(source="patient_id", read_only=True)
    patient_name = serializers.SerializerMethodField()
    provider = serializers.UUIDField(source="provider_id", read_only=True)
    provider_name = serializers.SerializerMethodField()
    scheduled_at = serializers.DateTimeField(read_only=True)
    duration_minutes = serializers.IntegerField(read_only=True)
    status = serializers.ChoiceField(choices=Appointment.Status.choices, read_only=True)
    reason = serializers.CharField(read_only=True)
    notes = serializers.CharField(read_only=True)


PROVIDER_REFUSED = "Choose a clinician on the patient's care team."


class AppointmentCreateSerializer(StrictSerializer):
    patient = serializers.UUIDField()
    # An id, checked by the service against the patient's care team: every id that is not a
    # bookable clinician gets the same answer (no oracle of who the clinicians are).
    provider = serializers.UUIDField(required=False, error_messages={"invalid": PROVIDER_REFUSED})
    scheduled_at = serializers.DateTimeField()
    duration_minutes = serializers.IntegerField(min_value=5, max_value=480, required=False)
    status = serializers.ChoiceField(choices=Appointment.Status.choices, required=False)
    reason = serializers.CharField(required=False, allow_blank=True, max_length=2000)
    notes = serializers.CharField(required=False, allow_blank=True, max_length=2000)


class AppointmentFilterSerializer(serializers.Serializer[Any]):
    """The appointment list's filters (query parameters; the page and date ones are
    neonpro.security's)."""

    patient = serializers.UUIDField(required=False, help_text="Only this patient's appointments.")
    provider = serializers.UUIDField(required=False, help_text="Only this clinician's schedule.")


class AppointmentUpdateSerializer(StrictSerializer):
    scheduled_at = serializers.DateTimeField(required=False)
    duration_minutes = serializers.IntegerField(min_value=5, max_value=480, required=False)
    status = serializers.ChoiceField(choices=Appointment.Status.choices, required=False)
    reason = serializers.CharField(required=False, allow_blank=True, max_length=2000)
    notes = serializers.CharField(required=False, allow_blank=True, max_length=2000)


class AppointmentCancelSerializer(StrictSerializer):
    """Cancelling takes no input (an empty object, or no body at all)."""


class AppointmentRescheduleSerializer(StrictSerializer):
    scheduled_at = serializers.DateTimeField(help_text="The new time (in the future).")
    duration_minutes = serializers.IntegerField(min_value=5, max_value=480, required=False)
