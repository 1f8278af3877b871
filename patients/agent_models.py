"""Which patients an agent reaches: explicit patients, and the care teams of clinicians it works for.

One ``AgentAccess`` row names either one patient or one clinician (whose *active* care team
the agent then reaches, as it changes). The row-level-security policies read this table
(``neonpro.security.rls.PlannerSQL.agent_parts``) and ``agent_patients`` is the ORM half of
the same rule. It lives with the patients because it is about them: it links a patient to an
agent, so it is a PHI table with its own policies (agents read their own rows, the system
writes them, administrators read them).
"""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from neonpro.security import scopes
from neonpro.security.context import Identity
from neonpro.security.scoping import NOTHING, ScopedManager


class AgentAccess(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    agent = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="agent_access", db_index=False
    )
    patient = models.ForeignKey(
        "patients.Patient", null=True, blank=True, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    care_team_of = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
        help_text="A supervising clinician: the agent reaches their active care team.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    # Default manager: scoped to the caller. Base manager (Django internals): plain, with
    # PostgreSQL RLS underneath.
    objects = ScopedManager()
    _plain = models.Manager()  # noqa: DJ012

    class Meta:
        base_manager_name = "_plain"
        verbose_name = "agent access"
        verbose_name_plural = "agent access"
        indexes = [models.Index(fields=["patient"], name="agentaccess_patient")]  # a patient's erasure
        constraints = [
            models.CheckConstraint(
                condition=Q(patient__isnull=False, care_team_of__isnull=True)
                | Q(patient__isnull=True, care_team_of__isnull=False),
                name="agentaccess_patient_or_care_team",
            ),
            # Also the indexes the policies' arrays read: (agent, patient) and (agent, clinician).
            models.UniqueConstraint(
                fields=["agent", "patient"], condition=Q(patient__isnull=False), name="agentaccess_agent_patient"
            ),
            models.UniqueConstraint(
                fields=["agent", "care_team_of"],
                condition=Q(care_team_of__isnull=False),
                name="agentaccess_agent_care_team",
            ),
        ]

    def __str__(self) -> str:
        return f"Agent access {self.pk}"

    @classmethod
    def scope_filter(cls, identity: Identity) -> Q:
        if identity.role == "admin":
            return Q()
        if identity.role == "agent":
            return Q(agent_id=identity.user_id)
        return NOTHING


def supervisors(identity: Identity) -> models.QuerySet[Any]:
    """Ids of the clinicians whose care teams the agent works for (a subquery)."""
    return AgentAccess._base_manager.filter(agent_id=identity.user_id, care_team_of__isnull=False).values(
        "care_team_of_id"
    )


def agent_patients(column: str, identity: Identity, scope: str) -> Q:
    """Q on ``column``: the agent's patient set, if it holds ``scope`` (nothing otherwise).

    The same rows as the policies' ``PlannerSQL.agent_parts``: its explicit patients, and the
    active care-team memberships of its clinicians.
    """
    if identity.role != "agent" or not scopes.granted(identity, scope):
        return NOTHING
    explicit = AgentAccess._base_manager.filter(agent_id=identity.user_id, patient__isnull=False)
    team = _active_team_of_supervisors(identity)
    return Q(**{f"{column}__in": explicit.values("patient_id")}) | Q(**{f"{column}__in": team.values("patient_id")})


def _active_team_of_supervisors(identity: Identity) -> models.QuerySet[Any]:
    from patients.models import CareTeamMembership

    today = timezone.localdate()
    return CareTeamMembership._base_manager.filter(
        Q(ends_on__isnull=True) | Q(ends_on__gte=today), clinician_id__in=supervisors(identity), starts_on__lte=today
    )


def in_agent_set(identity: Identity, patient_id: uuid.UUID, scope: str) -> bool:
    """Whether the agent holds ``scope`` and the patient is in its set — read from the access
    rows and memberships only, never from the patient's own row (which an agent without
    ``patients:read`` cannot see)."""
    if identity.role != "agent" or not scopes.granted(identity, scope):
        return False
    explicit = AgentAccess._base_manager.filter(agent_id=identity.user_id, patient_id=patient_id)
    return explicit.exists() or _active_team_of_supervisors(identity).filter(patient_id=patient_id).exists()
