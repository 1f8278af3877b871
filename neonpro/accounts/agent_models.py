"""Agents: machine identities (a ``User`` with role ``agent``) and the credentials they present.

* ``AgentProfile``: the agent's scopes (``neonpro.security.scopes``), who created it, why it
  exists, and whether it is disabled. Which patients it reaches is ``patients.AgentAccess``.
* ``ApiToken``: ``npa_<prefix>_<secret>``, stored as the prefix (to find the row) and an
  HMAC of the whole token under a ``keys`` MAC key (``key_id``): a copy of the table gives no
  usable token. Expiring, revocable, scoped to a subset of the agent's scopes.
* ``AgentCertificate``: a client certificate (by its SHA-256 fingerprint) that identifies the
  agent when the TLS terminator has verified it.

Nothing here holds PHI or a secret in clear; ``__str__`` shows ids and prefixes only.
"""

from __future__ import annotations

import datetime as dt
import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class AgentProfile(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="agent_profile")
    scopes = models.JSONField(default=list, help_text="What the agent may do (docs/agents.md).")
    description = models.CharField(max_length=200, blank=True, help_text="What the agent is for (never PHI).")
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The administrator who created it (empty when an operator command did).",
    )
    created_by_operator = models.CharField(max_length=64, blank=True, help_text="The operator who ran the command.")
    disabled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "agent"

    def __str__(self) -> str:
        return f"Agent {self.user_id}"

    @property
    def disabled(self) -> bool:
        return self.disabled_at is not None


class ApiTokenQuerySet(models.QuerySet["ApiToken"]):
    def usable(self, now: dt.datetime) -> ApiTokenQuerySet:
        return self.filter(revoked_at__isnull=True, expires_at__gt=now)


class ApiToken(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    agent = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="api_tokens")
    prefix = models.CharField(max_length=16, unique=True, help_text="Finds the token; not a secret.")
    digest = models.BinaryField(max_length=32, editable=False)
    key_id = models.PositiveIntegerField(editable=False, help_text="The keys MAC key the digest is under.")
    scopes = models.JSONField(default=list)
    created_at = models.DateTimeField(default=timezone.now)
    created_by_operator = models.CharField(max_length=64, blank=True)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    last_used_ip = models.GenericIPAddressField(null=True, blank=True)

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        verbose_name = "API token"
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=Q(expires_at__gt=models.F("created_at")), name="apitoken_expires_later")
        ]

    def __str__(self) -> str:
        return f"API token {self.prefix}"

    def is_usable(self, now: dt.datetime) -> bool:
        return self.revoked_at is None and self.expires_at > now


class AgentCertificate(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    agent = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="agent_certificates")
    fingerprint = models.CharField(max_length=64, unique=True, help_text="SHA-256 of the DER certificate, hex.")
    subject = models.CharField(max_length=500)
    serial = models.CharField(max_length=64, help_text="Serial number, hex.")
    not_before = models.DateTimeField()
    not_after = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)
    created_by_operator = models.CharField(max_length=64, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "agent certificate"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Agent certificate {self.fingerprint[:16]}"

    def is_usable(self, now: dt.datetime) -> bool:
        return self.revoked_at is None and self.not_before <= now < self.not_after
