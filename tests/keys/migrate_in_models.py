"""Test-only models for keys.migrate_in (tables: see MIGRATE_IN_MODELS).

* ``PlaintextRecord``: a table half-way through plaintext -> encrypted: each plaintext column
  has its nullable encrypted twin, whose label is pinned to the plaintext field's name (so it
  could later be renamed into it).
* ``LegacyRecord``: the old app's table, written by django-cryptography ``encrypt()`` fields.
  ``ImportedRecord`` is the same table seen through ``keys.fields`` (``managed = False``), as
  the model is once its fields have been switched state-only.
"""

from __future__ import annotations

import uuid

from django.db import models
from django_cryptography.fields import encrypt

from keys import fields


class PlaintextRecord(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=100, null=True, blank=True)
    born = models.DateField(null=True, blank=True)
    visits = models.IntegerField(null=True, blank=True)
    email = models.CharField(max_length=254, null=True, blank=True)
    data = models.JSONField(null=True, blank=True)
    name_enc = fields.EncryptedCharField(
        max_length=100, null=True, blank=True, context="keys_tests.plaintextrecord.name"
    )
    born_enc = fields.EncryptedDateField(null=True, blank=True, context="keys_tests.plaintextrecord.born")
    visits_enc = fields.EncryptedIntegerField(null=True, blank=True, context="keys_tests.plaintextrecord.visits")
    email_enc = fields.EncryptedCharField(
        max_length=254, search="email", null=True, blank=True, context="keys_tests.plaintextrecord.email"
    )
    data_enc = fields.EncryptedJSONField(null=True, blank=True, context="keys_tests.plaintextrecord.data")
    email_enc_probe = fields.search_probe("email_enc")

    class Meta:
        app_label = "keys_tests"

    def __str__(self) -> str:
        return f"PlaintextRecord {self.pk}"


class LegacyRecord(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = encrypt(models.CharField(max_length=100, null=True, blank=True))
    born = encrypt(models.DateField(null=True, blank=True))
    visits = encrypt(models.IntegerField(null=True, blank=True))
    email = encrypt(models.CharField(max_length=254, null=True, blank=True))
    # The online route: a new envelope column next to the django-cryptography one.
    name_enc = fields.EncryptedCharField(max_length=100, null=True, blank=True, context="keys_tests.legacyrecord.name")

    class Meta:
        app_label = "keys_tests"

    def __str__(self) -> str:
        return f"LegacyRecord {self.pk}"


class ImportedRecord(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = fields.EncryptedCharField(max_length=100, null=True, blank=True)
    born = fields.EncryptedDateField(null=True, blank=True)
    visits = fields.EncryptedIntegerField(null=True, blank=True)
    email = fields.EncryptedCharField(max_length=254, search="email", null=True, blank=True)

    class Meta:
        app_label = "keys_tests"
        db_table = "keys_tests_legacyrecord"
        managed = False

    def __str__(self) -> str:
        return f"ImportedRecord {self.pk}"


# The tables to create (ImportedRecord shares LegacyRecord's).
MIGRATE_IN_MODELS = [PlaintextRecord, LegacyRecord]
