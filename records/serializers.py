"""Record and appointment API shapes: validation only."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from records.models import Appointment, MedicalRecord


class RecordSerializer(serializers.Serializer[MedicalRecord]):
    id = serializers.UUIDField(read_only=True)
    patient = serializers.UUIDField(source="patient_id", read_only=True)
    provider = serializers.UUIDField(source="provider_id", read_only=True)
    record_date = serializers.DateField(read_only=True)
    diagnosis = serializers.CharField(read_only=True)
    treatment_plan = serializers.CharField(read_only=True)
    medications = serializers.CharField(read_only=True)
    lab_results = serializers.JSONField(read_only=True)
    notes = serializers.CharField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)


class _StrictSerializer(serializers.Serializer[Any]):
    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(self.initial_data) - set(self.fields))
        if unknown:
            raise serializers.ValidationError({name: "Unknown field." for name in unknown})
        return attrs


class RecordWriteSerializer(_StrictSerializer):
    record_date = serializers.DateField(required=False)
    diagnosis = serializers.CharField(required=False, allow_blank=True, max_length=20000)
    treatment_plan = serializers.CharField(required=False, allow_blank=True, max_length=20000)
    medications = serializers.CharField(required=False, allow_blank=True, max_length=20000)
    lab_results = serializers.JSONField(required=False, allow_null=True)
    notes = serializers.CharField(required=False, allow_blank=True, max_length=20000)


class AppointmentSerializer(serializers.Serializer[Appointment]):
    id = serializers.UUIDField(read_only=True)
    patient = serializers.UUIDField(source="patient_id", read_only=True)
    provider = serializers.UUIDField(source="provider_id", read_only=True)
    scheduled_at = serializers.DateTimeField(read_only=True)
    duration_minutes = serializers.IntegerField(read_only=True)
    status = serializers.CharField(read_only=True)
    reason = serializers.CharField(read_only=True)
    notes = serializers.CharField(read_only=True)


PROVIDER_REFUSED = "Choose a clinician on the patient's care team."


class AppointmentCreateSerializer(_StrictSerializer):
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
    """The appointment list's filters (query parameters; the page ones are the paginator's)."""

    patient = serializers.UUIDField(required=False)
    provider = serializers.UUIDField(required=False)


class AppointmentUpdateSerializer(_StrictSerializer):
    scheduled_at = serializers.DateTimeField(required=False)
    duration_minutes = serializers.IntegerField(min_value=5, max_value=480, required=False)
    status = serializers.ChoiceField(choices=Appointment.Status.choices, required=False)
    reason = serializers.CharField(required=False, allow_blank=True, max_length=2000)
    notes = serializers.CharField(required=False, allow_blank=True, max_length=2000)
