"""Patient API shapes: validation only; services do the work."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from neonpro.security.serializers import StrictSerializer
from patients.models import Patient, phone_validator, ssn_validator


def mask_ssn(ssn: str | None) -> str | None:
    return None if not ssn else "***-**-" + ssn[-4:]


class PatientSerializer(serializers.Serializer[Patient]):
    id = serializers.UUIDField(read_only=True)
    full_name = serializers.CharField(read_only=True)
    date_of_birth = serializers.DateField(read_only=True)
    mrn = serializers.CharField(read_only=True)
    ssn = serializers.SerializerMethodField(help_text="Masked: only the last four digits are ever sent.")
    email = serializers.EmailField(read_only=True, allow_null=True)
    phone = serializers.CharField(read_only=True, allow_null=True)
    address = serializers.CharField(read_only=True, allow_null=True)
    contact_by_email = serializers.BooleanField(read_only=True)
    contact_by_sms = serializers.BooleanField(read_only=True)
    active = serializers.BooleanField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_ssn(self, patient: Patient) -> str | None:
        return mask_ssn(patient.ssn)  # minimum necessary: the full SSN is never sent


class PatientCreateSerializer(StrictSerializer):
    full_name = serializers.CharField(max_length=200)
    date_of_birth = serializers.DateField()
    mrn = serializers.CharField(max_length=32)
    ssn = serializers.CharField(max_length=11, required=False, allow_null=True, validators=[ssn_validator])
    email = serializers.EmailField(max_length=254, required=False, allow_null=True)
    phone = serializers.CharField(max_length=32, required=False, allow_null=True, validators=[phone_validator])
    address = serializers.CharField(required=False, allow_null=True, allow_blank=True, max_length=1000)


class PatientUpdateSerializer(StrictSerializer):
    full_name = serializers.CharField(max_length=200, required=False)
    date_of_birth = serializers.DateField(required=False)
    mrn = serializers.CharField(max_length=32, required=False)
    ssn = serializers.CharField(max_length=11, required=False, allow_null=True, validators=[ssn_validator])
    email = serializers.EmailField(max_length=254, required=False, allow_null=True)
    phone = serializers.CharField(max_length=32, required=False, allow_null=True, validators=[phone_validator])
    address = serializers.CharField(required=False, allow_null=True, allow_blank=True, max_length=1000)
    contact_by_email = serializers.BooleanField(required=False)
    contact_by_sms = serializers.BooleanField(required=False)
    active = serializers.BooleanField(required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs:
            raise serializers.ValidationError("Nothing to change.")
        return attrs


SEARCHABLE_CHOICES = ["ssn", "mrn", "email", "phone"]


class SearchSerializer(StrictSerializer):
    field = serializers.ChoiceField(choices=SEARCHABLE_CHOICES)
    value = serializers.CharField(max_length=254, trim_whitespace=True)


class EmergencyAccessSerializer(StrictSerializer):
    reason = serializers.CharField(min_length=20, max_length=2000, help_text="Why, in at least 20 characters.")
    minutes = serializers.IntegerField(
        min_value=1, max_value=24 * 60, required=False, help_text="How long (default: the deployment's, 60)."
    )


class EmergencyAccessByIdentifierSerializer(EmergencyAccessSerializer):
    """Break-glass by a searchable identifier: the value travels in the body, never in a URL."""

    identifier = serializers.ChoiceField(choices=SEARCHABLE_CHOICES)
    value = serializers.CharField(max_length=254, trim_whitespace=True)


class GrantSerializer(serializers.Serializer[Any]):
    grant = serializers.UUIDField(help_text="The grant's id (to end it early).")
    patient = serializers.UUIDField()
    expires_at = serializers.DateTimeField()


class GrantEndedSerializer(serializers.Serializer[Any]):
    grant = serializers.UUIDField()
    ended_at = serializers.DateTimeField()


class ClinicianSerializer(serializers.Serializer[Any]):
    """A clinician on a patient's care team: whom the patient may ask for an appointment."""

    id = serializers.UUIDField()
    display_name = serializers.CharField()


class ExportedPatientSerializer(serializers.Serializer[Any]):
    id = serializers.UUIDField()
    full_name = serializers.CharField()
    date_of_birth = serializers.DateField()
    mrn = serializers.CharField()
    ssn = serializers.CharField(allow_null=True)
    email = serializers.CharField(allow_null=True)
    phone = serializers.CharField(allow_null=True)
    address = serializers.CharField(allow_null=True)
    contact_by_email = serializers.BooleanField()
    contact_by_sms = serializers.BooleanField()


class ExportedRecordSerializer(serializers.Serializer[Any]):
    id = serializers.UUIDField()
    record_date = serializers.DateField()
    provider = serializers.UUIDField()
    diagnosis = serializers.CharField()
    treatment_plan = serializers.CharField()
    medications = serializers.CharField()
    allergies = serializers.CharField(allow_null=True)
    lab_results = serializers.JSONField(allow_null=True)
    notes = serializers.CharField()


class ExportedAppointmentSerializer(serializers.Serializer[Any]):
    id = serializers.UUIDField()
    scheduled_at = serializers.DateTimeField()
    duration_minutes = serializers.IntegerField()
    status = serializers.CharField()
    provider = serializers.UUIDField()
    reason = serializers.CharField()


class ExportSerializer(serializers.Serializer[Any]):
    """The shape of the export bundle (patients.services.export_patient), for the schema."""

    patient = ExportedPatientSerializer()
    records = ExportedRecordSerializer(many=True)
    appointments = ExportedAppointmentSerializer(many=True)
