"""AuditEvent: who did what to which resource, with what outcome — never PHI.

Append-only (the application role may only INSERT and SELECT; a trigger refuses UPDATE,
DELETE and TRUNCATE for everyone) and chained: each event stores the hash of the one before
it, and ``hash`` is an HMAC-SHA256 under the ``audit`` data key named by ``key_id`` (rows
from before keyed hashing have no key id and a plain SHA-256; see docs/audit.md). Ids come
from the table's sequence only (a CHECK and a trigger). ``prev_hash`` is deliberately not
unique: one crafted row must not be able to make every later append fail; the verifier,
which walks the rows in id order, is what refuses a fork.
"""

from __future__ import annotations

import json
from typing import Any

from django.db import models

GENESIS = bytes(32)


class AuditEvent(models.Model):
    class Outcome(models.TextChoices):
        SUCCESS = "success", "Success"
        DENIED = "denied", "Denied"
        ERROR = "error", "Error"

    id = models.BigAutoField(primary_key=True)
    occurred_at = models.DateTimeField(db_index=True)
    actor_id = models.UUIDField(null=True, blank=True, db_index=True)
    actor_role = models.CharField(max_length=16, blank=True)
    action = models.CharField(max_length=64, db_index=True)
    resource_type = models.CharField(max_length=64, blank=True)
    resource_id = models.UUIDField(null=True, blank=True)
    patient_id = models.UUIDField(null=True, blank=True, db_index=True)
    outcome = models.CharField(max_length=8, choices=Outcome.choices)
    purpose = models.CharField(max_length=32, blank=True)
    source_ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent_hash = models.CharField(max_length=64, blank=True)
    request_id = models.UUIDField(null=True, blank=True)
    details = models.JSONField(default=dict, blank=True)
    prev_hash = models.BinaryField(max_length=32)
    hash = models.BinaryField(max_length=32, unique=True)
    key_id = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["resource_type", "resource_id"], name="audit_resource"),
            # The security dashboard's recent denied accesses (neonpro.security.dashboard).
            models.Index(fields=["outcome", "occurred_at"], name="audit_outcome_time"),
        ]

    def __str__(self) -> str:
        return f"AuditEvent {self.pk} {self.action} {self.outcome}"

    def canonical(self) -> bytes:
        """The bytes the chain hash covers (every field except id and the hashes)."""
        payload: dict[str, Any] = {
            "occurred_at": self.occurred_at.isoformat(),
            "actor_id": str(self.actor_id) if self.actor_id else None,
            "actor_role": self.actor_role,
            "action": self.action,
            "resource_type": self.resource_type,
            "resource_id": str(self.resource_id) if self.resource_id else None,
            "patient_id": str(self.patient_id) if self.patient_id else None,
            "outcome": self.outcome,
            "purpose": self.purpose,
            "source_ip": self.source_ip,
            "user_agent_hash": self.user_agent_hash,
            "request_id": str(self.request_id) if self.request_id else None,
            "details": self.details,
        }
        return json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str).encode()

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.canonical())
        data.update(id=self.pk, prev_hash=bytes(self.prev_hash).hex(), hash=bytes(self.hash).hex(), key_id=self.key_id)
        return data
