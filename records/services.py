"""Medical record and appointment use cases: transaction, permission, audit — in one place."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection, transaction
from django.utils import timezone

from keys.exceptions import RowIntegrityError
from keys.signals import integrity_failure
from neonpro.accounts.people import clinician_names
from neonpro.audit.services import SYSTEM_ACTOR_ID, record_event
from neonpro.security.access import get_visible, read_visible, save_changes
from neonpro.security.context import Identity, system_context
from neonpro.security.filters import DateRange
from neonpro.security.pagination import Page, PageRequest, paginate
from patients.agent_models import in_agent_set
from patients.models import active_care_team, active_care_team_members
from patients.services import access_purpose, patient_names, reachable_patient_id
from records.models import Appointment, MedicalRecord, MedicalRecordRevision

RECORD = "records.medicalrecord"
APPOINTMENT = "records.appointment"
RECORD_FIELDS = ("record_date", "diagnosis", "treatment_plan", "medications", "allergies", "lab_results", "notes")
CLINICAL_FIELDS = ("diagnosis", "treatment_plan", "medications", "allergies", "lab_results", "notes")
ROLLED_BACK = "the row is older than its history: an earlier copy of the whole row was put back"
APPOINTMENT_FIELDS = ("scheduled_at", "duration_minutes", "status", "reason", "notes")
CANCELLABLE = ("requested", "confirmed")
PROVIDER_REFUSED = "Choose a clinician on the patient's care team."


def _require_care_team(identity: Identity, patient_id: uuid.UUID, agent_scope: str = "") -> None:
    """Clinicians on the patient's care team (and the system) change clinical rows; so does an
    agent holding ``agent_scope`` for a patient of its set."""
    if identity.role == "system" or (agent_scope and in_agent_set(identity, patient_id, agent_scope)):
        return
    if identity.role != "clinician" or not active_care_team(identity.user_id).filter(patient_id=patient_id).exists():
        raise PermissionDenied("Only clinicians on the patient's care team can change clinical records.")


RECORD_ORDER = ("-record_date", "-id")
APPOINTMENT_ORDER = ("scheduled_at", "id")


@dataclass(frozen=True)
class Names:
    """Who the rows name, by id: patients' full names and clinicians' display names."""

    patients: dict[uuid.UUID, str] = field(default_factory=dict)
    clinicians: dict[uuid.UUID, str] = field(default_factory=dict)


def names_for(rows: Iterable[MedicalRecord | Appointment]) -> Names:
    """The names of the patients and providers of ``rows`` (two queries, whatever their number).

    Patients' names come through the caller's scope (row-level security and the scoped
    manager): a caller who sees a row sees its patient, and no other name is ever read.
    """
    rows = list(rows)
    return Names(
        patients=patient_names(row.patient_id for row in rows),
        clinicians=clinician_names(row.provider_id for row in rows),
    )


def list_records(
    identity: Identity,
    patient_id: uuid.UUID | str,
    *,
    page: PageRequest | None = None,
    dates: DateRange | None = None,
) -> Page[MedicalRecord]:
    """One page of a visible patient's timeline, newest first, within ``dates`` (the record
    date, both days included); audited as the page.

    Raises Patient.DoesNotExist (not visible) and ValidationError (a cursor not issued for
    this timeline to this caller).
    """
    dates = dates or DateRange()
    patient_pk = reachable_patient_id(identity, patient_id, action="record.list", agent_scope="records:read")
    result = paginate(
        MedicalRecord.objects.filter(patient_id=patient_pk, **dates.on_dates("record_date")),
        order=RECORD_ORDER,
        page=page or PageRequest(),
        scope=f"records:{patient_pk}",
        identity=identity,
    )
    record_event(
        "record.list",
        resource_type=RECORD,
        patient_id=patient_pk,
        purpose=access_purpose(identity, patient_pk),
        details={**result.audit_details(), **dates.audit_details()},
    )
    return result


SUMMARY_LIMIT = 500


def medication_and_allergy_history(identity: Identity, patient_id: uuid.UUID | str) -> list[MedicalRecord]:
    """Every record of a visible patient that names medications or allergies, newest first
    (at most SUMMARY_LIMIT), for the chart's "as recorded" lists: all of the timeline, not
    the page on screen. Only those fields are decrypted; audited (``record.summary``).

    Raises Patient.DoesNotExist (not visible).
    """
    patient_pk = reachable_patient_id(identity, patient_id, action="record.summary", agent_scope="records:read")
    rows = MedicalRecord.objects.filter(patient_id=patient_pk).order_by(*RECORD_ORDER)
    found = [
        r
        for r in rows.only("id", "patient_id", "row_version", "record_date", "medications", "allergies")[:SUMMARY_LIMIT]
        if r.medications or r.allergies
    ]
    record_event(
        "record.summary",
        resource_type=RECORD,
        patient_id=patient_pk,
        purpose=access_purpose(identity, patient_pk),
        details={"count": len(found), "fields": ["medications", "allergies"]},
    )
    return found


def get_record(identity: Identity, pk: uuid.UUID | str) -> MedicalRecord:
    """Raises MedicalRecord.DoesNotExist (not visible) and RowIntegrityError (tampered row,
    or a row older than its history)."""
    record = read_visible(
        MedicalRecord, pk, action="record.read", purpose_of=lambda r: access_purpose(identity, r.patient_id)
    )
    _check_history(record)
    return record


def _check_history(record: MedicalRecord) -> None:
    """A whole older copy of the row (columns, version and seal together) passes the row's own
    checks; its history, append-only and sealed, still knows the newest version."""
    latest = MedicalRecordRevision.objects.filter(record_id=record.pk).order_by("-record_version").first()
    if latest is not None and latest.record_version > record.row_version:
        error = RowIntegrityError(ROLLED_BACK, where=f"{RECORD} row {record.pk}")
        integrity_failure.send_robust(
            __name__, model=RECORD, pk=record.pk, check="history", code="older_than_history", key_id=None
        )
        raise error


def record_history(identity: Identity, record_id: uuid.UUID | str) -> list[MedicalRecordRevision]:
    """Every saved state of a visible record, oldest first (each decrypts on access)."""
    record = get_visible(MedicalRecord, record_id, action="record.history")
    revisions = list(MedicalRecordRevision.objects.filter(record_id=record.pk).order_by("record_version"))
    record_event(
        "record.history",
        resource_type=RECORD,
        resource_id=record.pk,
        patient_id=record.patient_id,
        purpose=access_purpose(identity, record.patient_id),
        details={"count": len(revisions)},
    )
    return revisions


def _save_revision(identity: Identity, record: MedicalRecord, action: str, fields: list[str]) -> None:
    """Append the record's state as it is now (its current version) to its history."""
    MedicalRecordRevision(
        record_id=record.pk,
        patient_id=record.patient_id,
        provider_id=record.provider_id,
        record_version=record.row_version,
        action=action,
        changed_by=identity.user_id or SYSTEM_ACTOR_ID,
        changed_fields=sorted(fields),
        record_date=record.record_date,
        **{name: getattr(record, name) for name in CLINICAL_FIELDS},
    ).save(force_insert=True)


def create_record(identity: Identity, patient_id: uuid.UUID | str, data: dict[str, Any]) -> MedicalRecord:
    """Raises Patient.DoesNotExist (not visible), PermissionDenied (read-only access), ValidationError.

    An agent (``records:write``) writes as the record's provider, for a patient of its set.
    """
    patient_pk = reachable_patient_id(identity, patient_id, action="record.create", agent_scope="records:write")
    _require_care_team(identity, patient_pk, "records:write")
    unknown = sorted(set(data) - set(RECORD_FIELDS))
    if unknown:
        raise ValidationError({name: "Unknown field." for name in unknown})
    record = MedicalRecord(patient_id=patient_pk, provider_id=identity.user_id or SYSTEM_ACTOR_ID, **data)
    record.full_clean(exclude=_not_validated(identity))
    with transaction.atomic():
        record.save(force_insert=True)
        _save_revision(identity, record, MedicalRecordRevision.Action.CREATE, sorted(data))
        record_event(
            "record.create",
            resource_type=RECORD,
            resource_id=record.pk,
            patient_id=patient_pk,
            details={"fields": sorted(data)},
        )
    return record


def _not_validated(identity: Identity) -> list[str] | None:
    """Links ``full_clean`` must not look up: the system's record has no provider account; an
    agent may not read the patient row (``reachable_patient_id`` found the patient, the foreign
    key and row-level security hold it)."""
    return {"system": ["provider"], "agent": ["patient"]}.get(identity.role)


def update_record(identity: Identity, record: MedicalRecord, changes: dict[str, Any]) -> MedicalRecord:
    """Save the changes at the record's next version and append that state to its history
    (first the state before, for a record with no history yet: one written before history)."""
    _require_care_team(identity, record.patient_id)
    with transaction.atomic():
        if not MedicalRecordRevision.objects.filter(record_id=record.pk).exists():
            _save_revision(identity, record, MedicalRecordRevision.Action.BASELINE, [])
        save_changes(record, changes, allowed=RECORD_FIELDS, action="record.update")
        _save_revision(identity, record, MedicalRecordRevision.Action.UPDATE, sorted(changes))
    return record


def list_appointments(
    identity: Identity,
    *,
    patient_id: uuid.UUID | str | None = None,
    provider_id: uuid.UUID | None = None,
    page: PageRequest | None = None,
    dates: DateRange | None = None,
) -> Page[Appointment]:
    """One page of the visible appointments, earliest first: of one patient, of one
    provider, or all the caller may see, within ``dates`` (days of ``scheduled_at``, both
    included); audited as the page.

    Raises Patient.DoesNotExist (``patient_id`` not visible) and ValidationError (a cursor
    not issued for this list to this caller).
    """
    dates = dates or DateRange()
    queryset = Appointment.objects.filter(**dates.on_times("scheduled_at"))
    patient_pk = None
    if patient_id is not None:
        patient_pk = reachable_patient_id(
            identity, patient_id, action="appointment.list", agent_scope="appointments:read"
        )
        queryset = queryset.filter(patient_id=patient_pk)
    if provider_id is not None:
        queryset = queryset.filter(provider_id=provider_id)
    result = paginate(
        queryset,
        order=APPOINTMENT_ORDER,
        page=page or PageRequest(),
        scope=f"appointments:{patient_pk or '*'}:{provider_id or '*'}",
        identity=identity,
    )
    record_event(
        "appointment.list",
        resource_type=APPOINTMENT,
        patient_id=patient_pk,
        purpose=access_purpose(identity, patient_pk) if patient_pk else "",
        details={**result.audit_details(), "provider": provider_id, **dates.audit_details()},
    )
    return result


def next_appointments(identity: Identity, patient_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Appointment]:
    """The soonest upcoming appointment (requested or confirmed, not yet begun) of each of
    ``patient_ids`` the caller may see, by patient id: one query (``DISTINCT ON`` the
    patient), audited as one ``appointment.list`` event naming the appointments found."""
    wanted = sorted(set(patient_ids))
    if not wanted:
        return {}
    upcoming = Appointment.objects.filter(
        patient_id__in=wanted, status__in=CANCELLABLE, scheduled_at__gte=timezone.now()
    ).order_by("patient_id", "scheduled_at", "id")
    if connection.features.can_distinct_on_fields:
        upcoming = upcoming.distinct("patient_id")  # PostgreSQL: one row a patient
    found: dict[uuid.UUID, Appointment] = {}
    for row in upcoming:  # SQLite (the embedded mode): the first, soonest, of each patient
        found.setdefault(row.patient_id, row)
    record_event(
        "appointment.list",
        resource_type=APPOINTMENT,
        details={"next_for": len(wanted), "count": len(found), "ids": [row.pk for row in found.values()]},
    )
    return found


def get_appointment(identity: Identity, pk: uuid.UUID | str) -> Appointment:
    return read_visible(
        Appointment, pk, action="appointment.read", purpose_of=lambda a: access_purpose(identity, a.patient_id)
    )


def create_appointment(identity: Identity, patient_id: uuid.UUID | str, data: dict[str, Any]) -> Appointment:
    """Clinicians book for care-team patients (``confirmed`` unless they say otherwise: the
    clinician is the one who confirms); patients request their own (``requested``, for a
    clinician on their care team to confirm), and so do agents (``appointments:write``) for
    the patients of their set."""
    patient_pk = reachable_patient_id(
        identity, patient_id, action="appointment.create", agent_scope="appointments:write"
    )
    unknown = sorted(set(data) - set(APPOINTMENT_FIELDS) - {"provider"})
    if unknown:
        raise ValidationError({name: "Unknown field." for name in unknown})
    provider = data.pop("provider", None)
    if identity.role == "agent":
        _require_care_team(identity, patient_pk, "appointments:write")
    if identity.role in ("patient", "agent"):
        if data.get("status", "requested") != "requested":
            raise ValidationError({"status": "Patients request appointments; a clinician confirms them."})
        if provider is None:
            raise ValidationError({"provider": PROVIDER_REFUSED})
        when = data.get("scheduled_at")
        if isinstance(when, dt.datetime) and when <= timezone.now():
            raise ValidationError({"scheduled_at": "Choose a time in the future."})
    else:
        _require_care_team(identity, patient_pk)
        provider = provider or identity.user_id
        data.setdefault("status", Appointment.Status.CONFIRMED)
    provider_id = _bookable_provider(patient_pk, getattr(provider, "pk", provider))
    appointment = Appointment(patient_id=patient_pk, provider_id=provider_id, **data)
    appointment.full_clean(exclude=["patient"] if identity.role == "agent" else None)  # see _not_validated
    with transaction.atomic():
        appointment.save(force_insert=True)
        record_event("appointment.create", resource_type=APPOINTMENT, resource_id=appointment.pk, patient_id=patient_pk)
    return appointment


def _bookable_provider(patient_id: uuid.UUID, provider: Any) -> uuid.UUID:
    """The provider if they are an active clinician on the patient's active care team; one
    answer for every other id — unknown, malformed, a patient's, an administrator's, a
    clinician elsewhere — so booking reveals nothing about who has an account."""
    from django.contrib.auth import get_user_model

    try:
        provider_id = uuid.UUID(str(provider))
    except ValueError:
        raise ValidationError({"provider": PROVIDER_REFUSED}) from None
    with system_context("booking: is the provider on the patient's care team"):  # yes or no, nothing more
        bookable = (
            get_user_model()
            .objects.filter(pk=provider_id, role="clinician", is_active=True)
            .filter(pk__in=active_care_team_members(patient_id))
            .exists()
        )
    if not bookable:
        raise ValidationError({"provider": PROVIDER_REFUSED})
    return provider_id


def update_appointment(identity: Identity, appointment: Appointment, changes: dict[str, Any]) -> Appointment:
    """Care-team clinicians change appointments; patients, and agents (``appointments:write``)
    for the patients of their set, only cancel open ones."""
    if identity.role == "agent":
        _require_care_team(identity, appointment.patient_id, "appointments:write")
    if identity.role in ("patient", "agent"):
        if set(changes) - {"status"} or changes.get("status") != "cancelled":
            raise ValidationError({"status": "Patients can only cancel an appointment."})
        if appointment.status not in CANCELLABLE:
            raise ValidationError({"status": f"A {appointment.status} appointment can no longer be cancelled."})
    else:
        _require_care_team(identity, appointment.patient_id)
    return save_changes(appointment, changes, allowed=APPOINTMENT_FIELDS, action="appointment.update")


class AppointmentStateError(Exception):
    """The appointment's status does not allow the change (cancelled, completed, no-show)."""


def _may_change_appointment(identity: Identity, appointment: Appointment, *, action: str, done: str) -> None:
    """Its patient, a clinician on the patient's care team (not through break-glass: that is
    read-only), or the system; PermissionDenied otherwise. Only requested and confirmed
    appointments that have not begun change (AppointmentStateError, audited as denied)."""
    if identity.role == "clinician":
        _require_care_team(identity, appointment.patient_id)
    elif identity.role not in ("patient", "system"):
        raise PermissionDenied("Only the patient and their care team change appointments.")
    if appointment.status not in CANCELLABLE:
        status = appointment.get_status_display().lower()
        _refuse(appointment, action, f"A {status} appointment can no longer be {done}.", status=appointment.status)
    if appointment.scheduled_at <= timezone.now():
        _refuse(appointment, action, f"This appointment has begun or is over: it can no longer be {done}.")


def _refuse(appointment: Appointment, action: str, message: str, *, status: str | None = None) -> None:
    """Audit ``action`` as denied for the appointment's state (its status, or its time has
    come: ``past``) and raise AppointmentStateError with ``message``."""
    details = {"refused": "status", "status": status} if status is not None else {"refused": "past"}
    record_event(
        action,
        outcome="denied",
        resource_type=APPOINTMENT,
        resource_id=appointment.pk,
        patient_id=appointment.patient_id,
        details=details,
    )
    raise AppointmentStateError(message)


def cancel_appointment(identity: Identity, appointment_id: uuid.UUID | str) -> Appointment:
    """Cancel a requested or confirmed appointment; audited (``appointment.cancel``).

    Raises Appointment.DoesNotExist (not visible), PermissionDenied (read-only access, or a
    role that does not change appointments), AppointmentStateError (no longer cancellable).
    """
    appointment = get_visible(Appointment, appointment_id, action="appointment.cancel")
    _may_change_appointment(identity, appointment, action="appointment.cancel", done="cancelled")
    changes = {"status": Appointment.Status.CANCELLED}
    return save_changes(appointment, changes, allowed=("status",), action="appointment.cancel")


def confirm_appointment(identity: Identity, appointment_id: uuid.UUID | str) -> Appointment:
    """A care-team clinician confirms a requested appointment; audited (``appointment.confirm``).

    Raises Appointment.DoesNotExist (not visible), PermissionDenied (not a clinician, or
    read-only emergency access), AppointmentStateError (not ``requested``: a cancelled one is
    not revived by confirming it, audited as denied).
    """
    appointment = get_visible(Appointment, appointment_id, action="appointment.confirm")
    if identity.role not in ("clinician", "system"):
        raise PermissionDenied("Only the patient's clinicians confirm appointments.")
    if identity.role == "clinician":
        _require_care_team(identity, appointment.patient_id)
    if appointment.status != Appointment.Status.REQUESTED:
        status = appointment.get_status_display().lower()
        message = f"Only a requested appointment can be confirmed; this one is {status}."
        _refuse(appointment, "appointment.confirm", message, status=appointment.status)
    changes = {"status": Appointment.Status.CONFIRMED}
    return save_changes(appointment, changes, allowed=("status",), action="appointment.confirm")


def reschedule_appointment(
    identity: Identity,
    appointment_id: uuid.UUID | str,
    *,
    scheduled_at: dt.datetime,
    duration_minutes: int | None = None,
) -> Appointment:
    """Move a requested or confirmed appointment to a time in the future; audited
    (``appointment.reschedule``, the fields changed).

    A patient's move is a request again (``requested``: a clinician confirms the new time,
    as the row-level-security policy also requires); a clinician's is ``confirmed``. Raises
    what ``cancel_appointment`` raises, and ValidationError for a time not in the future.
    """
    appointment = get_visible(Appointment, appointment_id, action="appointment.reschedule")
    _may_change_appointment(identity, appointment, action="appointment.reschedule", done="rescheduled")
    if scheduled_at <= timezone.now():
        raise ValidationError({"scheduled_at": "Choose a time in the future."})
    status = Appointment.Status.REQUESTED if identity.role == "patient" else Appointment.Status.CONFIRMED
    changes: dict[str, Any] = {"scheduled_at": scheduled_at, "status": status}
    if duration_minutes is not None:
        changes["duration_minutes"] = duration_minutes
    return save_changes(
        appointment, changes, allowed=("scheduled_at", "status", "duration_minutes"), action="appointment.reschedule"
    )


def export_records(patient_id: uuid.UUID) -> dict[str, Any]:
    """Records and appointments of one (already authorised) patient, JSON-ready."""

    def iso(value: dt.date | dt.datetime | None) -> str | None:
        return value.isoformat() if value else None

    return {
        "records": [
            {
                "id": str(r.pk),
                "record_date": iso(r.record_date),
                "provider": str(r.provider_id),
                "diagnosis": r.diagnosis,
                "treatment_plan": r.treatment_plan,
                "medications": r.medications,
                "allergies": r.allergies,
                "lab_results": r.lab_results,
                "notes": r.notes,
            }
            for r in MedicalRecord.objects.filter(patient_id=patient_id).order_by("record_date")
        ],
        "appointments": [
            {
                "id": str(a.pk),
                "scheduled_at": iso(a.scheduled_at),
                "duration_minutes": a.duration_minutes,
                "status": a.status,
                "provider": str(a.provider_id),
                "reason": a.reason,
            }
            for a in Appointment.objects.filter(patient_id=patient_id).order_by("scheduled_at")
        ],
    }
