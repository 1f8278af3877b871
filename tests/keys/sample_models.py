"""Test-only models covering every encrypted field type; their tables are made by conftest."""

from __future__ import annotations

import uuid

from django.db import models

from keys import fields
from keys.bulk import EncryptedQuerySet


class EncryptedSample(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    text = fields.EncryptedTextField(null=True, blank=True)
    char = fields.EncryptedCharField(max_length=20, null=True, blank=True)
    day = fields.EncryptedDateField(null=True, blank=True)
    moment = fields.EncryptedDateTimeField(null=True, blank=True)
    number = fields.EncryptedIntegerField(null=True, blank=True)
    amount = fields.EncryptedDecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    flag = fields.EncryptedBooleanField(null=True, blank=True)
    data = fields.EncryptedJSONField(null=True, blank=True)
    email = fields.EncryptedCharField(max_length=254, search="email", null=True, blank=True)
    code = fields.EncryptedCharField(max_length=64, search="email", null=True, blank=True)
    email_probe = fields.search_probe("email")
    code_probe = fields.search_probe("code")
    plain = models.CharField(max_length=20, blank=True, default="")

    objects = EncryptedQuerySet.as_manager()  # bulk_create through the column sealer, like the PHI models

    class Meta:
        app_label = "keys_tests"

    def __str__(self) -> str:
        return f"EncryptedSample {self.pk}"


SAMPLE_MODELS = [EncryptedSample]
