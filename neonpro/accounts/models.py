"""Users: one account per person or agent, identified by a UUID, with one role."""

from __future__ import annotations

import uuid

from django.contrib.auth.models import AbstractUser
from django.db import models

from neonpro.accounts.agent_models import AgentCertificate, AgentProfile, ApiToken  # noqa: F401 - agents' models


class User(AbstractUser):
    class Role(models.TextChoices):
        PATIENT = "patient", "Patient"
        CLINICIAN = "clinician", "Clinician"
        ADMIN = "admin", "Administrator"
        AGENT = "agent", "Agent"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    role = models.CharField(max_length=16, choices=Role.choices)
    must_change_password = models.BooleanField(
        default=False, help_text="Set when an administrator issued a temporary password: changed at the next sign-in."
    )

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(role__in=["patient", "clinician", "admin", "agent"]),
                name="accounts_user_role_valid",
            )
        ]
        permissions = [("issue_temporary_password", "Can issue a temporary password to another user")]

    def __str__(self) -> str:
        # Never a patient's username: admin pages, notification lists and admin-log entries
        # show accounts by this, and who is a patient is not the administrators' to know.
        if self.role == self.Role.PATIENT:
            return f"Patient account {self.pk}"
        return f"{self.username} ({self.role})"


class Notification(models.Model):
    """Something a user must know (e.g. a break-glass access). Carries ids, never PHI."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    recipient = models.ForeignKey(User, on_delete=models.CASCADE, related_name="notifications")
    kind = models.CharField(max_length=32)
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["recipient", "read_at"], name="notification_unread"),
            # Keyset pages of the admin list (neonpro.security.admin_pages), newest first.
            models.Index(fields=["-created_at", "-id"], name="notification_recent"),
        ]

    def __str__(self) -> str:
        return f"Notification {self.pk} ({self.kind})"


class PatientAccount(User):
    """Patient portal accounts as administrators see them: by opaque id only."""

    class Meta:
        proxy = True
        verbose_name = "patient portal account"

    def __str__(self) -> str:
        return f"Patient portal account {self.pk}"


class AccountChange(models.Model):
    """A database-level record of every write to accounts and their memberships.

    Written by triggers (PostgreSQL), so it also sees what bypasses the ORM's signals — raw SQL,
    ``QuerySet.update()``, ``bulk_update``. Append-only like the audit log. Column names
    only, never values.
    """

    id = models.BigAutoField(primary_key=True)
    occurred_at = models.DateTimeField()
    table_name = models.CharField(max_length=63)
    operation = models.CharField(max_length=8)
    row_id = models.CharField(max_length=64, help_text="The account (user id) the row belongs to.")
    columns = models.JSONField(default=list, help_text="Names of the columns that changed.")
    database_role = models.CharField(max_length=63)
    acting_as = models.CharField(max_length=64, blank=True, help_text="neonpro.user_id of the transaction, if set.")
    transaction_id = models.BigIntegerField()

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"Account change {self.pk} ({self.table_name} {self.operation})"


from neonpro.accounts.mfa_models import RecoveryCode, RecoveryCodeSet, TOTPDevice  # noqa: E402, F401
from neonpro.accounts.session_models import UserSession  # noqa: E402,F401 - the session store's table
