"""Data keys (DEKs): random 256-bit keys stored only wrapped by the master key.

Guarantees: at most one ``active`` key per purpose (a partial unique constraint in the
database); the plaintext key never reaches the database, a log or ``__str__``.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q


class DataKeyQuerySet(models.QuerySet["DataKey"]):
    def usable(self) -> DataKeyQuerySet:
        """Keys that may still decrypt (everything except destroyed keys)."""
        return self.exclude(status=DataKey.Status.DESTROYED)

    def active(self, purpose: str) -> DataKeyQuerySet:
        return self.filter(purpose=purpose, status=DataKey.Status.ACTIVE)


class DataKey(models.Model):
    class Purpose(models.TextChoices):
        FIELD = "field", "Field encryption"
        INDEX = "index", "Blind index"
        FILE = "file", "File encryption"
        SESSION = "session", "Session data"

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        DECRYPT_ONLY = "decrypt_only", "Decrypt only"
        RETIRED = "retired", "Retired"
        DESTROYED = "destroyed", "Destroyed"

    ALGORITHMS = {
        Purpose.FIELD: "AES-256-GCM",
        Purpose.INDEX: "HMAC-SHA256",
        Purpose.FILE: "AES-256-GCM",
        Purpose.SESSION: "AES-256-GCM",
    }

    purpose = models.CharField(max_length=16, choices=Purpose.choices)
    algorithm = models.CharField(max_length=32)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    wrapped_key = models.BinaryField(help_text="The key wrapped by the master key; never the key itself.")
    wrapping_key_id = models.CharField(max_length=200, help_text="Id of the master key (KEK) that wrapped it.")
    provider = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    activated_at = models.DateTimeField(null=True, blank=True)
    retired_at = models.DateTimeField(null=True, blank=True)
    destroyed_at = models.DateTimeField(null=True, blank=True)

    objects = DataKeyQuerySet.as_manager()

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["purpose"],
                condition=Q(status="active"),
                name="keys_datakey_one_active_per_purpose",
            ),
            models.CheckConstraint(
                condition=Q(purpose__in=["field", "index", "file", "session"]),
                name="keys_datakey_purpose_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"DataKey {self.pk} ({self.purpose}, {self.status})"

    def __repr__(self) -> str:
        return f"<DataKey id={self.pk} purpose={self.purpose} status={self.status}>"

    def wrap_context(self) -> bytes:
        """AAD binding the wrapped blob to this row's id and purpose."""
        return f"neonpro.datakey.v1|{self.pk}|{self.purpose}".encode()
