"""Patient use cases. Each owns its transaction and its audit event; none logs PHI."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from neonpro.audit.services import record_event
from neonpro.security.access import get_visible, read_visible, save_changes
from neonpro.security.context import SYSTEM, Identity, system_context
from patients.models import CareTeamMembership, EmergencyAccessGrant, Patient

logger = logging.getLogger(__name__)
RESOURCE = "patients.patient"
SEARCHABLE = ("ssn", "mrn", "email", "phone")
PATIENT_EDITABLE = ("email", "phone", "address", "contact_by_email", "contact_by_sms")
CLINICIAN_EDITABLE = (*PATIENT_EDITABLE, "full_name", "date_of_birth", "ssn", "mrn", "active")
MIN_REASON = 20


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


def list_patients(identity: Identity, *, limit: int = 200) -> list[Patient]:
    patients = list(Patient.objects.order_by("created_at")[:limit])
    record_event(
        "patient.list", resource_type=RESOURCE, details={"count": len(patients), "ids": [p.pk for p in patients]}
    )
    return patients


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
    allowed = PATIENT_EDITABLE if identity.role == "patient" else CLINICIAN_EDITABLE
    if identity.role not in ("patient", "clinician", "system"):
        raise PermissionDenied("Your role cannot change patient records.")
    if identity.role == "clinician" and not _on_care_team(identity, patient.pk):
        raise PermissionDenied("Emergency access is read-only.")
    return save_changes(patient, changes, allowed=allowed, action="patient.update")


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
    """End a clinician's membership (the row stays, as history). Administrators and the system."""
    if identity.role not in ("admin", "system"):
        raise PermissionDenied("Only administrators manage care teams.")
    membership: CareTeamMembership = get_visible(CareTeamMembership, membership_id, action="careteam.end")
    membership.ends_on = on or timezone.localdate()
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


def request_emergency_access(
    identity: Identity, *, patient_id: uuid.UUID | str, reason: str, minutes: int | None = None
) -> EmergencyAccessGrant:
    """Break-glass: read-only access to a patient outside the care team, for a limited time.

    Requires a written reason; is audited with purpose ``emergency``; notifies every active
    administrator. Raises PermissionDenied for non-clinicians, ValidationError for a missing
    reason or an out-of-range duration, Patient.DoesNotExist for an unknown patient.
    """
    if identity.role != "clinician":
        raise PermissionDenied("Only clinicians may use emergency access.")
    reason = (reason or "").strip()
    if len(reason) < MIN_REASON:
        raise ValidationError({"reason": f"Describe the emergency in at least {MIN_REASON} characters."})
    default = int(getattr(settings, "NEONPRO_BREAK_GLASS_MINUTES", 60))
    minutes = default if minutes is None else minutes
    if not 1 <= minutes <= 24 * 60:
        raise ValidationError({"minutes": "Emergency access lasts between 1 minute and 24 hours."})
    try:
        patient_uuid = uuid.UUID(str(patient_id))
    except ValueError:
        raise Patient.DoesNotExist("No patient with that id.") from None
    with system_context("break-glass: check the patient exists"):
        exists = Patient.objects.filter(pk=patient_uuid).exists()
    if not exists:
        record_event(
            "break_glass.start", outcome="denied", resource_type=RESOURCE, resource_id=patient_uuid, purpose="emergency"
        )
        raise Patient.DoesNotExist("No patient with that id.")
    now = timezone.now()
    with transaction.atomic():
        grant: EmergencyAccessGrant = EmergencyAccessGrant.objects.create(
            clinician_id=identity.user_id,
            patient_id=patient_uuid,
            reason=reason,
            granted_at=now,
            expires_at=now + dt.timedelta(minutes=minutes),
        )
        record_event(
            "break_glass.start",
            resource_type="patients.emergencyaccessgrant",
            resource_id=grant.pk,
            patient_id=patient_uuid,
            purpose="emergency",
            details={"minutes": minutes, "dicom_event": 110127},
        )
        _notify_admins(grant)
    logger.warning("Emergency access granted: grant=%s clinician=%s", grant.pk, identity.user_id)
    return grant


def end_emergency_access(identity: Identity, grant_id: uuid.UUID | str) -> EmergencyAccessGrant:
    grant: EmergencyAccessGrant = get_visible(EmergencyAccessGrant, grant_id, action="break_glass.stop")
    if identity.role != "system" and grant.clinician_id != identity.user_id:
        raise PermissionDenied("Only the clinician who opened emergency access can end it.")
    with system_context("end emergency access"):
        grant.ended_at = timezone.now()
        grant.save(update_fields=["ended_at"])
        record_event(
            "break_glass.stop",
            resource_type="patients.emergencyaccessgrant",
            resource_id=grant.pk,
            patient_id=grant.patient_id,
            purpose="emergency",
            details={"dicom_event": 110138},
        )
    return grant


def _notify_admins(grant: EmergencyAccessGrant) -> None:
    from neonpro.accounts.services import notify_role

    notify_role("admin", kind="break_glass", details={"grant": grant.pk, "patient": grant.patient_id})


def _on_care_team(identity: Identity, patient_id: uuid.UUID) -> bool:
    from patients.models import active_care_team

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
