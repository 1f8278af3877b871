"""Patients, their care teams and emergency (break-glass) access grants.

Every identifying field is encrypted; SSN, MRN, email and phone are searchable. Rows are
visible only as the row-level-security policies (see migrations) and ``scope_filter`` allow.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from django.conf import settings
from django.core.validators import EmailValidator, RegexValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from keys.fields import EncryptedCharField, EncryptedDateField, EncryptedTextField, search_probe
from neonpro.security.context import Identity
from neonpro.security.scoping import NOTHING, ScopedManager
from patients.agent_models import AgentAccess, agent_patients, supervisors  # noqa: F401 - agents' patient sets

ssn_validator = RegexValidator(r"^\d{3}-?\d{2}-?\d{4}$", "Enter an SSN as 123-45-6789.")
phone_validator = RegexValidator(r"^\+?[0-9 ()./-]{7,32}$", "Enter a phone number of digits, spaces and + ( ) - .")


def active_care_team(
    clinician_id: uuid.UUID | None, today: dt.date | None = None
) -> models.QuerySet[CareTeamMembership]:
    today = today or timezone.localdate()
    return CareTeamMembership._base_manager.filter(
        Q(ends_on__isnull=True) | Q(ends_on__gte=today), clinician_id=clinician_id, starts_on__lte=today
    )


def active_care_team_members(patient_id: uuid.UUID, today: dt.date | None = None) -> models.QuerySet[Any]:
    """Clinician ids on the patient's active care team (a subquery)."""
    today = today or timezone.localdate()
    return CareTeamMembership._base_manager.filter(
        Q(ends_on__isnull=True) | Q(ends_on__gte=today), patient_id=patient_id, starts_on__lte=today
    ).values("clinician_id")


def active_grants(
    clinician_id: uuid.UUID | None, now: dt.datetime | None = None
) -> models.QuerySet[EmergencyAccessGrant]:
    return EmergencyAccessGrant._base_manager.filter(
        clinician_id=clinician_id, expires_at__gt=now or timezone.now(), ended_at__isnull=True
    )


def clinician_patients(column: str, clinician_id: uuid.UUID | None) -> Q:
    """Q on ``column``: patients on the clinician's active care team or with an active grant."""
    return Q(**{f"{column}__in": active_care_team(clinician_id).values("patient_id")}) | Q(
        **{f"{column}__in": active_grants(clinician_id).values("patient_id")}
    )


def linked_rows(identity: Identity) -> Q:
    """Q for rows naming a clinician and a patient: admins see all, the others their own."""
    if identity.role == "admin":
        return Q()
    if identity.role == "clinician":
        return Q(clinician_id=identity.user_id)
    if identity.role == "patient":
        return Q(patient_id=identity.patient_id) if identity.patient_id else NOTHING
    return NOTHING


def readable_patient_ids(identity: Identity, agent_scope: str) -> Q:
    """Q on a ``patient_id`` column: the patients ``identity`` may read (not system); an
    agent's set only if it holds ``agent_scope`` (the table's read scope)."""
    if identity.role == "patient":
        return Q(patient_id=identity.patient_id) if identity.patient_id else NOTHING
    if identity.role == "clinician":
        return clinician_patients("patient_id", identity.user_id)
    return agent_patients("patient_id", identity, agent_scope)


class Patient(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="patient_profile",
        help_text="The patient's own portal account, if any.",
    )
    full_name = EncryptedCharField(max_length=200)
    date_of_birth = EncryptedDateField()
    ssn = EncryptedCharField("SSN", max_length=11, search="digits", null=True, blank=True, validators=[ssn_validator])
    mrn = EncryptedCharField("MRN", max_length=32, search="alnum")
    email = EncryptedCharField(max_length=254, search="email", null=True, blank=True, validators=[EmailValidator()])
    phone = EncryptedCharField(max_length=32, search="digits", null=True, blank=True, validators=[phone_validator])
    address = EncryptedTextField(null=True, blank=True)
    # The indexed probes of the searchable fields' blind-index tokens (keys.E105).
    ssn_probe = search_probe("ssn")
    mrn_probe = search_probe("mrn")
    email_probe = search_probe("email")
    phone_probe = search_probe("phone")
    contact_by_email = models.BooleanField(default=False, help_text="Consent to be contacted by email.")
    contact_by_sms = models.BooleanField(default=False, help_text="Consent to be contacted by SMS.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    active = models.BooleanField(default=True)

    # Default manager: scoped to the caller. Base manager (Django internals): plain, with
    # PostgreSQL RLS underneath.
    objects = ScopedManager()
    _plain = models.Manager()  # noqa: DJ012

    class Meta:
        base_manager_name = "_plain"
        # The patient list's keyset order (newest first); scope-only lists start from the
        # care-team array of the row-level-security policy (docs/database.md).
        indexes = [models.Index(fields=["-created_at", "-id"], name="patient_created_desc")]

    def __str__(self) -> str:
        return f"Patient {self.pk}"

    def __repr__(self) -> str:
        return f"<Patient {self.pk}>"

    @classmethod
    def scope_filter(cls, identity: Identity) -> Q:
        if identity.role == "patient":
            if identity.patient_id:
                return Q(id=identity.patient_id) | Q(user_id=identity.user_id)
            return Q(user_id=identity.user_id)
        if identity.role == "clinician":
            return clinician_patients("id", identity.user_id)
        return agent_patients("id", identity, "patients:read")


class CareTeamMembership(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Covered by the unique (patient, ...) and (clinician, patient) indexes: no single-column ones.
    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="care_team", db_index=False)
    clinician = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="care_teams", db_index=False
    )
    starts_on = models.DateField(default=timezone.localdate)
    ends_on = models.DateField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    # Default manager: scoped to the caller. Base manager (Django internals): plain, with
    # PostgreSQL RLS underneath.
    objects = ScopedManager()
    _plain = models.Manager()  # noqa: DJ012

    class Meta:
        base_manager_name = "_plain"
        # A clinician's active care team, read from the index alone (the policies' array).
        indexes = [
            models.Index(fields=["clinician", "patient", "starts_on", "ends_on"], name="careteam_clinician_active")
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(ends_on__isnull=True) | Q(ends_on__gte=models.F("starts_on")),
                name="careteam_ends_after_start",
            ),
            models.UniqueConstraint(fields=["patient", "clinician", "starts_on"], name="careteam_unique_start"),
        ]

    def __str__(self) -> str:
        return f"Care team membership {self.pk}"

    def is_active(self, today: dt.date) -> bool:
        return self.starts_on <= today and (self.ends_on is None or self.ends_on >= today)

    @classmethod
    def scope_filter(cls, identity: Identity) -> Q:
        if identity.role == "agent":  # its clinicians' memberships: how its patient set is found
            return Q(clinician_id__in=supervisors(identity))
        return linked_rows(identity)


class EmergencyAccessGrant(models.Model):
    """Break-glass: read-only access to one patient for a limited time, with a written reason,
    reviewed afterwards by a privacy officer."""

    class ReviewOutcome(models.TextChoices):
        APPROPRIATE = "appropriate", "Appropriate"
        INAPPROPRIATE = "inappropriate", "Inappropriate"
        FOLLOW_UP = "follow_up", "Needs follow-up"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    clinician = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="emergency_grants", db_index=False
    )
    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="emergency_grants")
    reason = EncryptedTextField()
    granted_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    reviewed_at = models.DateTimeField(null=True, blank=True)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    review_outcome = models.CharField(max_length=16, choices=ReviewOutcome.choices, blank=True)

    # Default manager: scoped to the caller. Base manager (Django internals): plain, with
    # PostgreSQL RLS underneath.
    objects = ScopedManager()
    _plain = models.Manager()  # noqa: DJ012

    class Meta:
        base_manager_name = "_plain"
        indexes = [
            models.Index(fields=["clinician", "patient", "expires_at"], name="grant_clinician_patient"),
            models.Index(fields=["clinician", "granted_at"], name="grant_clinician_recent"),
            # A clinician's active grants (the policies' array): open ones only.
            models.Index(
                fields=["clinician", "expires_at", "patient"],
                condition=Q(ended_at__isnull=True),
                name="grant_clinician_active",
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(expires_at__gt=models.F("granted_at")), name="grant_expires_after_start"
            ),
            models.CheckConstraint(
                condition=Q(reviewed_at__isnull=True, review_outcome="")
                | Q(reviewed_at__isnull=False, review_outcome__in=["appropriate", "inappropriate", "follow_up"]),
                name="grant_review_complete",
            ),
        ]
        permissions = [("review_emergencyaccessgrant", "Can review break-glass uses and read their reasons")]

    def __str__(self) -> str:
        return f"Emergency access grant {self.pk}"

    def is_active(self, now: dt.datetime) -> bool:
        return self.ended_at is None and self.expires_at > now

    @classmethod
    def scope_filter(cls, identity: Identity) -> Q:
        return linked_rows(identity)
