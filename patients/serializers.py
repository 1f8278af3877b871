"""Patient API shapes: validation only; services do the work."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from patients.models import Patient, phone_validator, ssn_validator


def mask_ssn(ssn: str | None) -> str | None:
    return None if not ssn else "***-**-" + ssn[-4:]


class PatientSerializer(serializers.Serializer[Patient]):
    id = serializers.UUIDField(read_only=True)
    full_name = serializers.CharField(read_only=True)
    date_of_birth = serializers.DateField(read_only=True)
    mrn = serializers.CharField(read_only=True)
    ssn = serializers.SerializerMethodField()
    email = serializers.EmailField(read_only=True)
    phone = serializers.CharField(read_only=True)
    address = serializers.CharField(read_only=True)
    contact_by_email = serializers.BooleanField(read_only=True)
    contact_by_sms = serializers.BooleanField(read_only=True)
    active = serializers.BooleanField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)

    def get_ssn(self, patient: Patient) -> str | None:
        return mask_ssn(patient.ssn)  # minimum necessary: the full SSN is never sent


class PatientCreateSerializer(serializers.Serializer[Any]):
    full_name = serializers.CharField(max_length=200)
    date_of_birth = serializers.DateField()
    mrn = serializers.CharField(max_length=32)
    ssn = serializers.CharField(max_length=11, required=False, allow_null=True, validators=[ssn_validator])
    email = serializers.EmailField(max_length=254, required=False, allow_null=True)
    phone = serializers.CharField(max_length=32, required=False, allow_null=True, validators=[phone_validator])
    address = serializers.CharField(required=False, allow_null=True, allow_blank=True, max_length=1000)


class PatientUpdateSerializer(serializers.Serializer[Any]):
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
        unknown = sorted(set(self.initial_data) - set(self.fields))
        if unknown:
            raise serializers.ValidationError({name: "Unknown field." for name in unknown})
        if not attrs:
            raise serializers.ValidationError("Nothing to change.")
        return attrs


class SearchSerializer(serializers.Serializer[Any]):
    field = serializers.ChoiceField(choices=["ssn", "mrn", "email", "phone"])
    value = serializers.CharField(max_length=254, trim_whitespace=True)


class EmergencyAccessSerializer(serializers.Serializer[Any]):
    reason = serializers.CharField(min_length=20, max_length=2000)
    minutes = serializers.IntegerField(min_value=1, max_value=24 * 60, required=False)
