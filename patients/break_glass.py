"""Break-glass: emergency access to a patient outside the care team, its ceilings and its review.

Guarantees: a written reason, read-only, time-limited; every use, refusal and review is in
the audit chain with purpose ``emergency`` (DICOM 110127/110138); administrators are
notified of each use and alerted when one clinician's uses in a day reach a threshold; a
clinician may break the glass at most ``NEONPRO_BREAK_GLASS_PER_HOUR`` times an hour and
``NEONPRO_BREAK_GLASS_PER_DAY`` times a day (attempts on unknown ids count too, so ids cannot
be probed freely), never twice at once for the same patient; privacy officers review each
use afterwards, and only they read the reasons.
"""

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
from neonpro.security.access import get_visible
from neonpro.security.context import Identity, system_context
from patients.models import EmergencyAccessGrant, Patient, active_care_team, active_grants
from patients.services import SEARCHABLE

logger = logging.getLogger(__name__)
RESOURCE = "patients.patient"
GRANT = "patients.emergencyaccessgrant"
MIN_REASON = 20


class EmergencyAccessLimitError(Exception):
    """Break-glass refused by policy (not by permissions): how long to wait, or what exists already."""

    def __init__(self, message: str, *, retry_after: int | None = None, expires_at: dt.datetime | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.expires_at = expires_at


def break_glass_limits() -> tuple[int, int, int]:
    """(grants per hour, grants per day, grants per day that alert administrators) per clinician."""
    return (
        int(getattr(settings, "NEONPRO_BREAK_GLASS_PER_HOUR", 3)),
        int(getattr(settings, "NEONPRO_BREAK_GLASS_PER_DAY", 6)),
        int(getattr(settings, "NEONPRO_BREAK_GLASS_ALERT_AFTER", 3)),
    )


def _recent_break_glass(clinician_id: uuid.UUID | None, now: dt.datetime) -> list[dt.datetime]:
    """When this clinician broke the glass, or tried on an unknown patient, in the last 24 hours.

    Attempts on unknown ids count like grants: probing ids is bounded the same way.
    """
    from neonpro.audit.models import AuditEvent

    since = now - dt.timedelta(days=1)
    granted = EmergencyAccessGrant._base_manager.filter(clinician_id=clinician_id, granted_at__gt=since)
    probes = AuditEvent.objects.filter(
        actor_id=clinician_id,
        action="break_glass.start",
        outcome="denied",
        occurred_at__gt=since,
        details__refused="unknown_patient",
    )
    return sorted([*granted.values_list("granted_at", flat=True), *probes.values_list("occurred_at", flat=True)])


def _check_limits(identity: Identity, patient_uuid: uuid.UUID | None, now: dt.datetime) -> int:
    """Refuse past the hourly or daily ceiling (EmergencyAccessLimitError); returns today's count."""
    per_hour, per_day, _ = break_glass_limits()
    recent = _recent_break_glass(identity.user_id, now)
    last_hour = [moment for moment in recent if moment > now - dt.timedelta(hours=1)]
    wait = None
    if len(last_hour) >= per_hour:
        wait = last_hour[-per_hour] + dt.timedelta(hours=1) - now
    if len(recent) >= per_day:
        wait = max(wait or dt.timedelta(0), recent[-per_day] + dt.timedelta(days=1) - now)
    if wait is not None:
        record_event(
            "break_glass.start",
            outcome="denied",
            resource_type=RESOURCE,
            resource_id=patient_uuid,
            purpose="emergency",
            details={"refused": "rate_limit"},
        )
        seconds = max(int(wait.total_seconds()) + 1, 1)
        raise EmergencyAccessLimitError(
            f"Emergency access is limited to {per_hour} an hour and {per_day} a day; try again in "
            f"{seconds // 60 + 1} minutes, or ask a colleague on the patient's care team.",
            retry_after=seconds,
        )
    return len(recent)


def request_emergency_access(
    identity: Identity, *, patient_id: uuid.UUID | str, reason: str, minutes: int | None = None
) -> EmergencyAccessGrant:
    """Break-glass: read-only access to a patient outside the care team, for a limited time.

    Requires a written reason; is audited with purpose ``emergency``; notifies every active
    administrator, and alerts them when a clinician's uses in a day reach
    ``NEONPRO_BREAK_GLASS_ALERT_AFTER``. Raises PermissionDenied for non-clinicians,
    ValidationError for a missing reason or an out-of-range duration, Patient.DoesNotExist for
    an unknown patient, EmergencyAccessLimitError past the hourly or daily ceiling
    (``retry_after``) or while the clinician already holds an active grant for the patient
    (``expires_at``): grants do not stack.
    """
    if identity.role != "clinician":
        raise PermissionDenied("Only clinicians may use emergency access.")
    reason, minutes = _reason_and_minutes(reason, minutes)
    try:
        patient_uuid = uuid.UUID(str(patient_id))
    except ValueError:
        raise Patient.DoesNotExist("No patient with that id.") from None
    with transaction.atomic():
        _serialise_per_clinician(identity.user_id)
        return _open_grant(identity, patient_uuid, reason, minutes)


def _reason_and_minutes(reason: str, minutes: int | None) -> tuple[str, int]:
    """The reason, stripped, and the duration (the default when none): ValidationError when
    the reason is too short or the duration out of range."""
    reason = (reason or "").strip()
    if len(reason) < MIN_REASON:
        raise ValidationError({"reason": f"Describe the emergency in at least {MIN_REASON} characters."})
    default = int(getattr(settings, "NEONPRO_BREAK_GLASS_MINUTES", 60))
    minutes = default if minutes is None else minutes
    if not 1 <= minutes <= 24 * 60:
        raise ValidationError({"minutes": "Emergency access lasts between 1 minute and 24 hours."})
    return reason, minutes


def request_emergency_access_by_identifier(
    identity: Identity, *, identifier: str, value: str, reason: str, minutes: int | None = None
) -> EmergencyAccessGrant:
    """Break-glass for the one patient a searchable identifier (MRN, SSN, email, phone) names,
    for a clinician who cannot know the patient's id (the patient is off their care team).

    The lookup is an equality search on the blind index, as the system (the patient is not
    visible to the caller yet), audited like a search (``patient.search``: the field and the
    ids found, never the value). No match and several matches get the answer an unknown
    patient id gets (Patient.DoesNotExist, a ``denied`` break-glass event that counts against
    the clinician's ceilings): the answer never says whether, or how many, patients have that
    identifier. Otherwise exactly ``request_emergency_access``: same checks, limits and events.
    """
    if identity.role != "clinician":
        raise PermissionDenied("Only clinicians may use emergency access.")
    if identifier not in SEARCHABLE:
        raise ValidationError({"identifier": f"Identify the patient by one of {', '.join(SEARCHABLE)}."})
    if not isinstance(value, str) or not value.strip() or len(value) > 254:
        raise ValidationError({"value": "Enter the identifier's value (at most 254 characters)."})
    reason, minutes = _reason_and_minutes(reason, minutes)
    with transaction.atomic():
        _serialise_per_clinician(identity.user_id)
        _check_limits(identity, None, timezone.now())
        with system_context("break-glass: find the patient by a searchable identifier"):
            found = list(Patient.objects.filter(**{identifier: value}).values_list("id", flat=True)[:2])
        record_event(
            "patient.search",
            resource_type=RESOURCE,
            purpose="emergency",
            details={"field": identifier, "count": len(found), "ids": found, "for": "break_glass"},
        )
        if len(found) != 1:
            record_event(
                "break_glass.start",
                outcome="denied",
                resource_type=RESOURCE,
                purpose="emergency",
                details={"refused": "unknown_patient", "identifier": identifier},
            )
            raise Patient.DoesNotExist("No patient with that identifier.")
        return _open_grant(identity, found[0], reason, minutes)


def _serialise_per_clinician(clinician_id: uuid.UUID | None) -> None:
    """One break-glass request per clinician at a time (until the transaction ends): counting
    and inserting under the lock, two concurrent requests cannot both pass the ceiling or stack."""
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [f"neonpro.break_glass:{clinician_id}"]
            )


def _open_grant(identity: Identity, patient_uuid: uuid.UUID, reason: str, minutes: int) -> EmergencyAccessGrant:
    now = timezone.now()
    _check_limits(identity, patient_uuid, now)
    with system_context("break-glass: check the patient exists"):
        exists = Patient.objects.filter(pk=patient_uuid).exists()
    if not exists:
        record_event(
            "break_glass.start",
            outcome="denied",
            resource_type=RESOURCE,
            resource_id=patient_uuid,
            purpose="emergency",
            details={"refused": "unknown_patient"},
        )
        raise Patient.DoesNotExist("No patient with that id.")
    if active_care_team(identity.user_id).filter(patient_id=patient_uuid).exists():
        record_event(
            "break_glass.start",
            outcome="denied",
            resource_type=RESOURCE,
            resource_id=patient_uuid,
            patient_id=patient_uuid,
            purpose="emergency",
            details={"refused": "care_team"},
        )
        raise ValidationError(
            {"patient": "This patient is in your care already: open the chart, no emergency access is needed."}
        )
    current = active_grants(identity.user_id, now).filter(patient_id=patient_uuid).first()
    if current is not None:
        record_event(
            "break_glass.start",
            outcome="denied",
            resource_type=GRANT,
            resource_id=current.pk,
            patient_id=patient_uuid,
            purpose="emergency",
            details={"refused": "already_active"},
        )
        raise EmergencyAccessLimitError(
            "You already have emergency access to this patient; it does not stack.", expires_at=current.expires_at
        )
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
            resource_type=GRANT,
            resource_id=grant.pk,
            patient_id=patient_uuid,
            purpose="emergency",
            details={"minutes": minutes, "dicom_event": 110127},
        )
        _notify_admins(grant, now)
    logger.warning("Emergency access granted: grant=%s clinician=%s", grant.pk, identity.user_id)
    return grant


REVIEW_PERMISSION = "review_emergencyaccessgrant"


def may_review(user: Any) -> bool:
    """Whether ``user`` reviews break-glass uses: the permission given explicitly (the "Privacy
    officers" group), not the superuser's blanket one — a superuser is an administrator, and
    administrators do not read PHI unless someone made them reviewers (an audited change)."""
    if not getattr(user, "is_active", False):
        return False
    explicit = {"content_type__app_label": "patients", "codename": REVIEW_PERMISSION}
    return bool(
        user.user_permissions.filter(**explicit).exists()
        or user.groups.filter(**{f"permissions__{k}": v for k, v in explicit.items()}).exists()
    )


def review_emergency_access(reviewer: Any, grant_id: uuid.UUID | str, *, outcome: str) -> EmergencyAccessGrant:
    """A privacy officer's verdict on one break-glass use (once; never on their own).

    Raises PermissionDenied without the review permission or for one's own grant,
    ValidationError for an unknown outcome or a grant already reviewed or still active.
    """
    if not may_review(reviewer):
        raise PermissionDenied("Only privacy officers review emergency access.")
    if outcome not in EmergencyAccessGrant.ReviewOutcome.values:
        raise ValidationError({"outcome": f"One of {', '.join(EmergencyAccessGrant.ReviewOutcome.values)}."})
    with system_context("break-glass review"):
        grant: EmergencyAccessGrant = get_visible(EmergencyAccessGrant, grant_id, action="break_glass.review")
        if grant.clinician_id == reviewer.pk:
            raise PermissionDenied("Nobody reviews their own emergency access.")
        if grant.reviewed_at is not None:
            raise ValidationError({"outcome": "This use was reviewed already."})
        if grant.is_active(timezone.now()):
            raise ValidationError(
                {"outcome": "Review a use once it has ended or expired: access continues until then."}
            )
        grant.reviewed_at, grant.reviewed_by_id, grant.review_outcome = timezone.now(), reviewer.pk, outcome
        grant.save(update_fields=["reviewed_at", "reviewed_by", "review_outcome"])
        record_event(
            "break_glass.review",
            resource_type=GRANT,
            resource_id=grant.pk,
            patient_id=grant.patient_id,
            purpose="emergency",
            details={"outcome": outcome},
        )
    return grant


def emergency_reason_for_review(reviewer: Any, grant: EmergencyAccessGrant) -> str:
    """The written reason of a grant, for its reviewer only (and the reading is audited)."""
    if not may_review(reviewer):
        raise PermissionDenied("Only privacy officers read the reasons given for emergency access.")
    record_event(
        "break_glass.reason_read",
        resource_type=GRANT,
        resource_id=grant.pk,
        patient_id=grant.patient_id,
        purpose="emergency",
    )
    return str(grant.reason)


def end_emergency_access(identity: Identity, grant_id: uuid.UUID | str) -> EmergencyAccessGrant:
    grant: EmergencyAccessGrant = get_visible(EmergencyAccessGrant, grant_id, action="break_glass.stop")
    if identity.role != "system" and grant.clinician_id != identity.user_id:
        raise PermissionDenied("Only the clinician who opened emergency access can end it.")
    with system_context("end emergency access"):
        grant.ended_at = timezone.now()
        grant.save(update_fields=["ended_at"])
        record_event(
            "break_glass.stop",
            resource_type=GRANT,
            resource_id=grant.pk,
            patient_id=grant.patient_id,
            purpose="emergency",
            details={"dicom_event": 110138},
        )
    return grant


def _notify_admins(grant: EmergencyAccessGrant, now: dt.datetime) -> None:
    """Every use, to every administrator; and once a day per clinician, an alert (also logged
    at CRITICAL for the SIEM) when their grants in 24 hours reach the threshold."""
    from neonpro.accounts.models import Notification
    from neonpro.accounts.services import notify_role

    notify_role("admin", kind="break_glass", details={"grant": grant.pk, "patient": grant.patient_id})
    since = now - dt.timedelta(days=1)
    grants = EmergencyAccessGrant._base_manager.filter(clinician_id=grant.clinician_id, granted_at__gt=since).count()
    threshold = break_glass_limits()[2]
    if grants < threshold:
        return
    alerted = Notification.objects.filter(
        kind="break_glass_many", details__clinician=str(grant.clinician_id), created_at__gt=since
    ).exists()
    if not alerted:
        notify_role("admin", kind="break_glass_many", details={"clinician": grant.clinician_id, "count": grants})
        logger.critical("Emergency access threshold reached: clinician=%s grants_24h=%s", grant.clinician_id, grants)
