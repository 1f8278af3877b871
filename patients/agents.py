"""Creating agents with their patient sets, and listing them (operators' use cases).

An agent's set is explicit patients (by id or MRN), the active care team of a supervising
clinician, or both (``AgentAccess``). Errors name what is wrong without echoing what was
typed for a patient (an MRN is PHI); everything is checked before anything is written, so a
refused command leaves nothing behind.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from neonpro.accounts.agent_models import AgentProfile
from neonpro.accounts.agents import create_agent_account
from neonpro.audit.services import record_event
from neonpro.security.context import system_context
from patients.agent_models import AgentAccess
from patients.models import Patient

RESOURCE = "patients.agentaccess"


def _patient_id(item: str, position: int) -> uuid.UUID:
    where = f"--patients item {position}"
    try:
        found = list(Patient.objects.filter(pk=uuid.UUID(item)).values_list("pk", flat=True))
    except ValueError:
        found = list(Patient.objects.filter(mrn=item).values_list("pk", flat=True)[:2])
    if not found:
        raise ValueError(f"{where}: no patient has that id or MRN")
    if len(found) > 1:
        raise ValueError(f"{where}: more than one patient has that MRN; give the patient's id instead")
    return found[0]


def _clinician(username: str) -> Any:
    clinician = get_user_model().objects.filter(username=username, role="clinician", is_active=True).first()
    if clinician is None:
        raise ValueError(f"--care-team-of: no active clinician is called {username!r}")
    return clinician


def create_agent(
    name: str,
    *,
    agent_scopes: Any,
    patients: Sequence[str] = (),
    care_team_of: str | None = None,
    description: str = "",
    operator: str = "",
) -> tuple[AgentProfile, list[AgentAccess]]:
    """A new agent reaching ``patients`` (ids or MRNs) and/or the active care team of the
    clinician ``care_team_of``. Raises ValueError naming what is wrong; nothing is written then."""
    items = [item.strip() for item in patients if item.strip()]
    if not items and not care_team_of:
        raise ValueError("name the agent's patients (--patients) or its supervising clinician (--care-team-of)")
    with system_context("create an agent and its patient set"):
        patient_ids = list(dict.fromkeys(_patient_id(item, n) for n, item in enumerate(items, start=1)))
        clinician = _clinician(care_team_of) if care_team_of else None
        with transaction.atomic():
            profile = create_agent_account(name, agent_scopes=agent_scopes, description=description, operator=operator)
            rows = [AgentAccess(agent=profile.user, patient_id=patient_id) for patient_id in patient_ids]
            if clinician is not None:
                rows.append(AgentAccess(agent=profile.user, care_team_of=clinician))
            for row in rows:
                row.save(force_insert=True)
            record_event(
                "agent.access_grant",
                resource_type=RESOURCE,
                details={
                    "agent": profile.user_id,
                    "patients": patient_ids,
                    "care_team_of": clinician.pk if clinician is not None else None,
                },
            )
    return profile, rows


@dataclass(frozen=True)
class AgentSummary:
    name: str
    scopes: list[str]
    disabled: bool
    patients: int
    care_team_of: list[str]
    active_tokens: int
    certificates: int


def list_agents() -> list[AgentSummary]:
    """Every agent, by name: scopes, how many explicit patients, whose care teams, live credentials."""
    now = timezone.now()
    summaries = []
    with system_context("list agents"):
        profiles = AgentProfile.objects.select_related("user").order_by("user__username")
        for profile in profiles:
            access = AgentAccess.objects.filter(agent_id=profile.user_id)
            summaries.append(
                AgentSummary(
                    name=profile.user.username,
                    scopes=list(profile.scopes),
                    disabled=profile.disabled,
                    patients=access.filter(patient__isnull=False).count(),
                    care_team_of=sorted(
                        access.filter(care_team_of__isnull=False).values_list("care_team_of__username", flat=True)
                    ),
                    active_tokens=profile.user.api_tokens.usable(now).count(),
                    certificates=profile.user.agent_certificates.filter(revoked_at__isnull=True).count(),
                )
            )
    return summaries
