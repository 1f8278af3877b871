"""Patient use cases. Each owns its transaction and its audit event; none logs PHI."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Iterable
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from neonpro.audit.services import record_event
from neonpro.security import scopes
from neonpro.security.access import get_visible, read_visible, save_changes
from neonpro.security.context import SYSTEM, Identity, system_context
from neonpro.security.pagination import Page, PageRequest, paginate
from patients.agent_models import in_agent_set
from patients.models import (
    CareTeamMembership,
    EmergencyAccessGrant,
    Patient,
    active_care_team,
    active_care_team_members,
    active_grants,
)

logger = logging.getLogger(__name__)
RESOURCE = "patients.patient"
SEARCHABLE = ("ssn", "mrn", "email", "phone")
PATIENT_EDITABLE = ("email", "phone", "address", "contact_by_email", "contact_by_sms")
CLINICIAN_EDITABLE = (*PATIENT_EDITABLE, "full_name", "date_of_birth", "ssn", "mrn", "active")
# An agent with patients:write keeps contact details current; identity and consent are people's.
AGENT_EDITABLE = ("email", "phone", "address")


def patient_id_for_user(user_id: uuid.UUID) -> uuid.UUID | None:
    """The Patient linked to a patient user's account (looked up under that user's identity)."""
    return Patient.objects.filter(user_id=user_id).values_list("id", flat=True).first()


def register_patient(
    *,
    full_name: str,
    date_of_birth: dt.date,
    mrn: str,
    ssn: str | None = None,
    email: str | None = None,
    phone: str | None = None,
    address: str | None = None,
    user: Any = None,
    by: Identity | None = None,
) -> Patient:
    """Validate and store a new patient; a registering clinician joins its care team.

    Raises ValidationError naming the bad fields (nothing is written), PermissionDenied when
    ``by`` is neither a clinician nor the system.
    """
    if by is not None and by.role not in ("clinician", "system"):
        raise PermissionDenied("Only clinicians register patients.")
    patient = Patient(
        full_name=full_name,
        date_of_birth=date_of_birth,
        mrn=mrn,
        ssn=ssn,
        email=email,
        phone=phone,
        address=address,
        user=user,
    )
    patient.full_clean()
    with system_context("register patient"), transaction.atomic():
        patient.save(force_insert=True)
        if by is not None and by.role == "clinician":
            CareTeamMembership.objects.create(patient=patient, clinician_id=by.user_id)
        record_event(
            "patient.create", resource_type=RESOURCE, resource_id=patient.pk, patient_id=patient.pk, actor=by or SYSTEM
        )
    return patient


def get_patient(identity: Identity, pk: uuid.UUID | str, *, action: str = "patient.read") -> Patient:
    """A patient the caller may read, audited; raises Patient.DoesNotExist otherwise."""
    return read_visible(Patient, pk, action=action, purpose_of=lambda p: access_purpose(identity, p.pk))


def reveal_ssn(identity: Identity, patient_id: uuid.UUID | str) -> str:
    """The full SSN of a patient ("" when none is on file), for a clinician on the care team;
    audited as its own read (``patient.reveal_ssn``, purpose treatment, never the value).
    Everywhere else the SSN is masked.

    Raises PermissionDenied for other roles and under break-glass (minimum necessary: an
    emergency identifies the patient by name, date of birth and MRN; the refusal is audited,
    purpose emergency), Patient.DoesNotExist (audited as denied) for a patient the clinician
    may not see.
    """
    if identity.role != "clinician":
        raise PermissionDenied("Only clinicians may see a full SSN.")
    patient = get_visible(Patient, patient_id, action="patient.reveal_ssn")
    purpose = access_purpose(identity, patient.pk)
    outcome = "success" if purpose == "treatment" else "denied"
    record_event(
        "patient.reveal_ssn",
        outcome=outcome,
        resource_type=RESOURCE,
        resource_id=patient.pk,
        patient_id=patient.pk,
        purpose=purpose,
    )
    if outcome == "denied":
        raise PermissionDenied("Emergency access shows the SSN masked: only the care team reveals it.")
    return patient.ssn or ""


def emergency_grant(identity: Identity, patient_id: uuid.UUID) -> EmergencyAccessGrant | None:
    """The caller's active break-glass grant for a patient off their care team (what a page's
    emergency banner shows: until when, and the grant to end), or None: not a clinician, on
    the care team, or no grant. Only the grant's times are loaded, never its reason."""
    if identity.role != "clinician" or _on_care_team(identity, patient_id):
        return None
    grants = active_grants(identity.user_id).filter(patient_id=patient_id)
    return grants.only("id", "patient_id", "expires_at").order_by("-expires_at").first()


PATIENT_ORDER = ("-created_at", "-id")


def list_patients(identity: Identity, *, page: PageRequest | None = None) -> Page[Patient]:
    """One page of the patients the caller may see, newest first; audited as the page.

    A clinician's list starts from their active care-team rows and break-glass grants (the
    same rows as ``Patient.scope_filter``, as one indexed set of ids rather than an OR over
    the patients table). Raises ValidationError on a cursor not issued for this list to
    this caller.
    """
    if identity.role == "clinician":
        ids = active_care_team(identity.user_id).values("patient_id")
        ids = ids.union(active_grants(identity.user_id).values("patient_id"))
        queryset = Patient._base_manager.filter(pk__in=ids)  # RLS still applies underneath
    else:
        queryset = Patient.objects.all()
    result = paginate(queryset, order=PATIENT_ORDER, page=page or PageRequest(), scope="patients", identity=identity)
    record_event("patient.list", resource_type=RESOURCE, details=result.audit_details())
    if identity.role == "clinician":
        # A patient listed through a break-glass grant is an emergency read of that patient:
        # one event each, with its purpose, for the privacy officer reviewing the grant.
        granted = set(active_grants(identity.user_id).values_list("patient_id", flat=True))
        for patient in result.items:
            if patient.pk in granted and access_purpose(identity, patient.pk) == "emergency":
                record_event(
                    "patient.list",
                    resource_type=RESOURCE,
                    resource_id=patient.pk,
                    patient_id=patient.pk,
                    purpose="emergency",
                )
    return result


def patient_names(ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, str]:
    """Full names of the patients among ``ids`` that the caller may see (the scoped manager and
    row-level security leave out the others); only that one field is decrypted."""
    wanted = set(ids)
    if not wanted:
        return {}
    return {p.pk: p.full_name for p in Patient.objects.filter(pk__in=wanted).only("id", "full_name")}


CLINICIAN_ORDER = ("last_name", "first_name", "id")


def list_care_team(identity: Identity, patient_id: uuid.UUID | str, *, page: PageRequest | None = None) -> Page[Any]:
    """One page of the clinicians on a visible patient's active care team, by name; audited.

    For a patient choosing whom to ask for an appointment (and a clinician seeing their
    colleagues). The patient is checked first (Patient.DoesNotExist when not visible); the
    memberships are then read as the system, since a membership row is visible only to its
    own clinician and patient: the answer names clinicians, nothing about the patient.
    Raises ValidationError on a cursor not issued for this list to this caller.
    """
    from django.contrib.auth import get_user_model

    patient = get_visible(Patient, patient_id, action="careteam.list")
    with system_context("care team of a patient the caller may see"):
        clinicians = get_user_model().objects.filter(
            pk__in=active_care_team_members(patient.pk), role="clinician", is_active=True
        )
        result: Page[Any] = paginate(
            clinicians,
            order=CLINICIAN_ORDER,
            page=page or PageRequest(),
            scope=f"careteam:{patient.pk}",
            identity=identity,
        )
    record_event(
        "careteam.list",
        resource_type="patients.careteammembership",
        patient_id=patient.pk,
        purpose=access_purpose(identity, patient.pk),
        details=result.audit_details(),
    )
    return result


def search_patients(identity: Identity, *, field: str, value: str) -> list[Patient]:
    """Equality search on a searchable field. The value searched is never logged or audited."""
    if field not in SEARCHABLE:
        raise ValidationError({"field": f"Search by one of {', '.join(SEARCHABLE)}."})
    if not isinstance(value, str) or not value.strip() or len(value) > 254:
        raise ValidationError({"value": "Enter the value to search for (at most 254 characters)."})
    found = list(Patient.objects.filter(**{field: value})[:50])
    record_event(
        "patient.search",
        resource_type=RESOURCE,
        details={"field": field, "count": len(found), "ids": [p.pk for p in found]},
    )
    return found


def update_patient(identity: Identity, patient: Patient, changes: dict[str, Any]) -> Patient:
    """Apply ``changes`` the caller's role may make; ValidationError names anything else."""
    if identity.role == "agent":
        if not scopes.granted(identity, "patients:write"):
            raise PermissionDenied("This agent may not change patients (it lacks patients:write).")
        return save_changes(patient, changes, allowed=AGENT_EDITABLE, action="patient.update")
    allowed = PATIENT_EDITABLE if identity.role == "patient" else CLINICIAN_EDITABLE
    if identity.role not in ("patient", "clinician", "system"):
        raise PermissionDenied("Your role cannot change patient records.")
    if identity.role == "clinician" and not _on_care_team(identity, patient.pk):
        raise PermissionDenied("Emergency access is read-only.")
    return save_changes(patient, changes, allowed=allowed, action="patient.update")


def reachable_patient_id(identity: Identity, pk: uuid.UUID | str, *, action: str, agent_scope: str) -> uuid.UUID:
    """The id of a patient whose records or appointments the caller works on.

    Anyone but an agent: a patient they may read (``get_visible``). An agent: a patient of its
    set, if it holds ``agent_scope`` — whether or not it may read the patient's own row
    (``patients:read`` is a scope of its own). Raises Patient.DoesNotExist otherwise, audited
    as denied, the same answer as for an id that does not exist.
    """
    if identity.role != "agent":
        return get_visible(Patient, pk, action=action).pk
    patient_id = uuid.UUID(str(pk))
    if not in_agent_set(identity, patient_id, agent_scope):
        record_event(action, outcome="denied", resource_type=RESOURCE, resource_id=patient_id)
        raise Patient.DoesNotExist("No patient with that id.")
    return patient_id


def export_patient(identity: Identity, pk: uuid.UUID | str) -> dict[str, Any]:
    """The patient's own data as one JSON-ready bundle (HIPAA right of access).

    Patients only: it carries the full SSN and every record, more than any clinical view.
    Raises PermissionDenied for other roles, Patient.DoesNotExist for someone else's id.
    """
    if identity.role not in ("patient", "system"):
        raise PermissionDenied("Only patients export their own record.")
    patient = get_visible(Patient, pk, action="patient.export")
    from records.services import export_records

    bundle = {
        "patient": {
            "id": str(patient.pk),
            "full_name": patient.full_name,
            "date_of_birth": patient.date_of_birth.isoformat(),
            "mrn": patient.mrn,
            "ssn": patient.ssn,
            "email": patient.email,
            "phone": patient.phone,
            "address": patient.address,
            "contact_by_email": patient.contact_by_email,
            "contact_by_sms": patient.contact_by_sms,
        },
        **export_records(patient.pk),
    }
    record_event("patient.export", resource_type=RESOURCE, resource_id=patient.pk, patient_id=patient.pk)
    return bundle


def add_to_care_team(
    identity: Identity,
    *,
    patient_id: uuid.UUID,
    clinician: Any,
    starts_on: dt.date | None = None,
    ends_on: dt.date | None = None,
) -> CareTeamMembership:
    """Put a clinician on a patient's care team (administrators and the system)."""
    if identity.role not in ("admin", "system"):
        raise PermissionDenied("Only administrators manage care teams.")
    if getattr(clinician, "role", None) != "clinician":
        raise ValidationError({"clinician": "Care teams are made of clinicians."})
    membership = CareTeamMembership(
        patient_id=patient_id, clinician=clinician, starts_on=starts_on or timezone.localdate(), ends_on=ends_on
    )
    membership.full_clean(validate_constraints=False)
    with transaction.atomic():
        membership.save(force_insert=True)
        record_event(
            "careteam.add",
            resource_type="patients.careteammembership",
            resource_id=membership.pk,
            patient_id=patient_id,
            details={"clinician": clinician.pk},
        )
    return membership


def end_care_team_membership(
    identity: Identity, membership_id: uuid.UUID | str, *, on: dt.date | None = None
) -> CareTeamMembership:
    """End a clinician's membership (the row stays, as history). Administrators and the system.

    Raises ValidationError for a membership that has ended before ``on`` (ending it "again"
    would reopen it), CareTeamMembership.DoesNotExist for an unknown id."""
    if identity.role not in ("admin", "system"):
        raise PermissionDenied("Only administrators manage care teams.")
    membership: CareTeamMembership = get_visible(CareTeamMembership, membership_id, action="careteam.end")
    ends_on = on or timezone.localdate()
    if membership.ends_on is not None and membership.ends_on < ends_on:
        # Ending it again later would reopen it until then.
        raise ValidationError({"ends_on": f"This membership ended on {membership.ends_on} already."})
    membership.ends_on = ends_on
    membership.full_clean(validate_constraints=False)
    with transaction.atomic():
        membership.save(update_fields=["ends_on"])
        record_event(
            "careteam.end",
            resource_type="patients.careteammembership",
            resource_id=membership.pk,
            patient_id=membership.patient_id,
            details={"clinician": membership.clinician_id},
        )
    return membership


def _on_care_team(identity: Identity, patient_id: uuid.UUID) -> bool:
    return active_care_team(identity.user_id).filter(patient_id=patient_id).exists()


def access_purpose(identity: Identity, patient_id: uuid.UUID | str) -> str:
    """``emergency`` when a clinician reads through a break-glass grant, else ``treatment``."""
    if identity.role != "clinician":
        return ""
    try:
        patient_uuid = uuid.UUID(str(patient_id))
    except ValueError:
        return ""
    return "treatment" if _on_care_team(identity, patient_uuid) else "emergency"
