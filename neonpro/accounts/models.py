"""Users: one account per person or agent, identified by a UUID, with one role."""

from __future__ import annotations

import uuid

from django.contrib.auth.models import AbstractUser
from django.db import models


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
        indexes = [models.Index(fields=["recipient", "read_at"], name="notification_unread")]

    def __str__(self) -> str:
        return f"Notification {self.pk} ({self.kind})"


class PatientAccount(User):
    """Patient portal accounts as administrators see them: by opaque id only."""

    class Meta:
        proxy = True
        verbose_name = "patient portal account"

    def __str__(self) -> str:
        return f"Patient portal account {self.pk}"
