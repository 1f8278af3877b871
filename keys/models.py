"""Data keys (DEKs): random 256-bit keys stored only wrapped by the master key.

Guarantees: at most one ``active`` key per purpose (a partial unique constraint in the
database); the plaintext key never reaches the database, a log or ``__str__``.
"""

from __future__ import annotations

import datetime as dt
import uuid

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
        AUDIT = "audit", "Audit chain MAC"
        IDENTITY = "identity", "Database identity MAC"

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
        Purpose.AUDIT: "HMAC-SHA256",
        Purpose.IDENTITY: "HMAC-SHA256",
    }
    # Keys that authenticate (HMAC) rather than encrypt: no nonce to wear out, nothing to
    # decrypt with them.
    MAC_PURPOSES = (Purpose.INDEX, Purpose.AUDIT, Purpose.IDENTITY)

    purpose = models.CharField(max_length=16, choices=Purpose.choices)
    algorithm = models.CharField(max_length=32)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    wrapped_key = models.BinaryField(help_text="The key wrapped by the master key; never the key itself.")
    wrapping_key_id = models.CharField(max_length=200, help_text="Id of the master key (KEK) that wrapped it.")
    provider = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    activated_at = models.DateTimeField(null=True, blank=True)
    deactivated_at = models.DateTimeField(null=True, blank=True, help_text="When it became decrypt-only.")
    retired_at = models.DateTimeField(null=True, blank=True)
    destroyed_at = models.DateTimeField(null=True, blank=True)
    encryption_count = models.BigIntegerField(
        default=0,
        help_text="Encryptions reserved under this key (an upper bound: processes reserve blocks).",
    )

    objects = DataKeyQuerySet.as_manager()

    class Meta:
        ordering = ["id"]
        permissions = [("rotate_datakey", "Can rotate, re-encrypt and retire data keys")]
        constraints = [
            models.UniqueConstraint(
                fields=["purpose"],
                condition=Q(status="active"),
                name="keys_datakey_one_active_per_purpose",
            ),
            models.CheckConstraint(
                condition=Q(purpose__in=["field", "index", "file", "session", "audit", "identity"]),
                name="keys_datakey_purpose_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"DataKey {self.pk} ({self.purpose}, {self.status})"

    def __repr__(self) -> str:
        return f"<DataKey id={self.pk} purpose={self.purpose} status={self.status}>"

    def age_days(self, now: dt.datetime) -> int:
        return (now - (self.activated_at or self.created_at)).days

    def wrap_context(self) -> bytes:
        """AAD binding the wrapped blob to this row's id and purpose."""
        return f"neonpro.datakey.v1|{self.pk}|{self.purpose}".encode()


class ReencryptionJob(models.Model):
    """Checkpoint of a resumable re-encryption: one row per (purpose, model) run."""

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    purpose = models.CharField(max_length=16)
    model = models.CharField(max_length=100, help_text="app_label.ModelName")
    target_key_id = models.IntegerField(help_text="The active key values are moved to.")
    last_pk = models.UUIDField(null=True, blank=True, help_text="Rows up to here are done (primary-key order).")
    rows_done = models.BigIntegerField(default=0)
    rows_changed = models.BigIntegerField(default=0)
    rows_total = models.BigIntegerField(default=0)
    values_unreadable = models.BigIntegerField(
        default=0, help_text="Values under destroyed (crypto-shredded) keys: skipped, they cannot be moved."
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    started_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-started_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["purpose", "model"], condition=Q(status="running"), name="keys_one_running_job_per_model"
            )
        ]

    def __str__(self) -> str:
        return f"Re-encryption {self.model} ({self.purpose}, {self.status})"

    @property
    def percent(self) -> float:
        return 100.0 if not self.rows_total else min(100.0, 100.0 * self.rows_done / self.rows_total)


class MasterKeyCheck(models.Model):
    """The check value of a master key, recorded when it first wrapped or unwrapped a stored key.

    A PKCS#11 key is found by its label, and anyone with the SO's rights can put another key
    under the same label: start-up (``keys.E003``) compares the token's key with the value
    recorded here and refuses a key that is not the one that wrapped the stored data keys.
    The value is a one-way function of the key (nothing secret).
    """

    key_id = models.CharField(max_length=200, unique=True)
    check_value = models.CharField(max_length=64)
    recorded_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"MasterKeyCheck {self.key_id}"


class SubjectEpoch(models.Model):
    """A subject-wrapping key ("shred epoch"): the key that wraps every live subject key.

    Its material is not in the database: it lives in a 0600 file in NEONPRO_SUBJECT_KEY_DIR,
    wrapped by the master key, and destroying the epoch deletes that file. Epochs are rotated
    every NEONPRO_SUBJECT_EPOCH_DAYS (live subject keys are rewrapped under the new one) and a
    retired epoch is destroyed NEONPRO_SUBJECT_EPOCH_KEEP_DAYS later, so a subject key erased
    from the database, but still present in a dead row version, WAL or a backup, can no longer
    be unwrapped once the epoch it was wrapped under is destroyed.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    wrapping_key_id = models.CharField(max_length=200, help_text="Master key that wraps the epoch key file.")
    created_at = models.DateTimeField()
    retired_at = models.DateTimeField(null=True, blank=True, help_text="No live subject key uses it since then.")
    destroyed_at = models.DateTimeField(null=True, blank=True, help_text="Its key file was erased.")

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"SubjectEpoch {self.pk}"

    def wrap_context(self) -> bytes:
        return f"neonpro.subject-epoch.v1|{self.pk}".encode()


class SubjectKey(models.Model):
    """A data key of one subject (a patient): erase it and that subject's files are gone.

    Random, not derived, so erasing it affects nobody else. What erasing covers, exactly: the
    database row loses the wrapped key at once, so no process can read the subject's
    subject-key data any more; copies of the wrapped key left in dead row versions, WAL and
    backups stay unwrappable until the epoch that wrapped it (``epoch``) is destroyed, at most
    NEONPRO_SUBJECT_EPOCH_DAYS + NEONPRO_SUBJECT_EPOCH_KEEP_DAYS (+ one day for the daily job)
    later. Keys with no epoch (made before epochs existed) are wrapped by the master key and
    stay recoverable from old copies until that master key is destroyed. See docs/keys.md.
    """

    subject = models.UUIDField(primary_key=True, default=uuid.uuid4)
    wrapped_key = models.BinaryField()
    wrapping_key_id = models.CharField(max_length=200)
    provider = models.CharField(max_length=64)
    epoch = models.UUIDField(null=True, blank=True, db_index=True, help_text="The SubjectEpoch that wraps it.")
    created_at = models.DateTimeField(auto_now_add=True)
    shredded_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"SubjectKey {self.subject}"

    def wrap_context(self) -> bytes:
        return f"neonpro.subjectkey.v1|{self.subject}".encode()
