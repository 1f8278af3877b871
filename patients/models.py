"""The Patient: every identifying field is encrypted; SSN, MRN, email and phone are searchable."""

from __future__ import annotations

import uuid

from django.core.validators import EmailValidator, RegexValidator
from django.db import models

from keys.fields import EncryptedCharField, EncryptedDateField, EncryptedTextField

ssn_validator = RegexValidator(r"^\d{3}-?\d{2}-?\d{4}$", "Enter an SSN as 123-45-6789.")
phone_validator = RegexValidator(r"^\+?[0-9 ()./-]{7,32}$", "Enter a phone number of digits, spaces and + ( ) - .")


class Patient(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    full_name = EncryptedCharField(max_length=200)
    date_of_birth = EncryptedDateField()
    ssn = EncryptedCharField("SSN", max_length=11, search="digits", null=True, blank=True, validators=[ssn_validator])
    mrn = EncryptedCharField("MRN", max_length=32, search="alnum")
    email = EncryptedCharField(max_length=254, search="email", null=True, blank=True, validators=[EmailValidator()])
    phone = EncryptedCharField(max_length=32, search="digits", null=True, blank=True, validators=[phone_validator])
    address = EncryptedTextField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    active = models.BooleanField(default=True)

    def __str__(self) -> str:
        return f"Patient {self.pk}"

    def __repr__(self) -> str:
        return f"<Patient {self.pk}>"
