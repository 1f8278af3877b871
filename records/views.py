"""The clinician's pages for records and appointments: thin over records.services.

The services check rights, own the transaction and write the audit events; a page only
translates their answers: a ValidationError next to the fields it names, PermissionDenied
(emergency access is read-only; not on the care team) and a refused state as a message
with nothing saved, DoesNotExist as the one 404 page. Times are UTC.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from keys.exceptions import StaleRowError
from neonpro.accounts.people import clinician_names
from neonpro.audit.services import SYSTEM_ACTOR_ID
from neonpro.security.access import get_visible
from neonpro.security.filters import DateRange, date_range
from neonpro.security.pagination import next_link, page_request
from neonpro.security.web import audit_refusal, not_found_as_404, page_identity, role_required, show_service_errors
from patients.services import access_purpose, get_patient
from records import services
from records.forms import (
    AppointmentForm,
    RecordEditForm,
    RecordForm,
    RescheduleForm,
    ScheduleFilterForm,
    lab_formset,
    lab_rows,
)
from records.models import Appointment, MedicalRecord

CHANGED_MEANWHILE = (
    "This was changed by someone else since you opened it, so your changes were not saved. "
    "Reload the page to see the new version, then make your changes again."
)
# What a service refuses besides invalid input: nothing is saved, the page says why.
REFUSED = (PermissionDenied, services.AppointmentStateError, StaleRowError)
T = TypeVar("T")
FIELD_LABELS = {
    "record_date": "Record date",
    "diagnosis": "Diagnosis",
    "treatment_plan": "Treatment plan",
    "medications": "Medications",
    "allergies": "Allergies",
    "lab_results": "Lab results",
    "notes": "Notes",
}


def _next(request: HttpRequest, fallback: str) -> str:
    """Where to go after an action: the ``next`` it was given if that is a path on this
    site, else ``fallback``."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    same_site = url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    )
    return target if target.startswith("/") and same_site else fallback


def _refusal(error: Exception) -> str:
    if isinstance(error, StaleRowError):
        return CHANGED_MEANWHILE
    return " ".join(error.messages) if isinstance(error, ValidationError) else str(error)


def _attempt(form: forms.BaseForm, action: Callable[[], T]) -> tuple[T | None, int]:
    """A form's service call: (its result, 200), or (None, the status) with what the service
    refused shown on the form (invalid values next to their fields)."""
    try:
        return action(), 200
    except ValidationError as error:
        show_service_errors(form, error)
        return None, 200
    except REFUSED as refused:
        form.add_error(None, _refusal(refused))
        if isinstance(refused, PermissionDenied):
            audit_refusal()
            return None, 403
        return None, 409


def _act(request: HttpRequest, action: Callable[[], Appointment], done: str) -> None:
    """A button's service call: ``done`` (with the appointment's time) or why it was refused."""
    try:
        appointment = action()
    except (ValidationError, *REFUSED) as refused:
        if isinstance(refused, PermissionDenied):
            audit_refusal(request)
        messages.error(request, _refusal(refused))
    else:
        messages.success(request, done.format(when=_when(appointment.scheduled_at)))


def _when(moment: Any) -> str:
    return f"{moment.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC"


# -- Medical records ---------------------------------------------------------------------------


@role_required("clinician")
@not_found_as_404
@require_http_methods(["GET", "POST"])
def record_new(request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
    identity = page_identity(request)
    patient = get_patient(identity, pk)
    data = request.POST if request.method == "POST" else None
    form, labs = RecordForm(data), lab_formset(data)
    status = 200
    if data is not None and form.is_valid() and labs.is_valid():
        record_data = form.record_data()
        if labs.lab_results() is not None:
            record_data["lab_results"] = labs.lab_results()
        record, status = _attempt(form, lambda: services.create_record(identity, patient.pk, record_data))
        if record is not None:
            messages.success(request, "The record was saved.")
            return redirect("patients:chart", pk=patient.pk)
    context = {
        "patient_id": patient.pk,
        "patient_name": patient.full_name,
        "form": form,
        "labs": labs,
        "emergency": access_purpose(identity, patient.pk) == "emergency",
    }
    return render(request, "records/record_form.html", context, status=status)


@role_required("clinician")
@not_found_as_404
@require_GET
def record_detail(request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
    identity = page_identity(request)
    record = services.get_record(identity, pk)
    history = services.record_history(identity, record.pk)
    names = services.names_for([record])
    changers = clinician_names(revision.changed_by for revision in history)
    rows = lab_rows(record.lab_results)
    context = {
        "record": record,
        "patient_name": names.patients.get(record.patient_id),
        "provider_name": names.clinicians.get(record.provider_id),
        "lab_rows": rows,
        "lab_json": json.dumps(record.lab_results, indent=2, ensure_ascii=False) if rows is None else "",
        "history": [
            {
                "revision": revision,
                "by": "System" if revision.changed_by == SYSTEM_ACTOR_ID else changers.get(revision.changed_by),
                "fields": [FIELD_LABELS.get(name, name) for name in revision.changed_fields],
            }
            for revision in reversed(history)
        ],
        "emergency": access_purpose(identity, record.patient_id) == "emergency",
    }
    return render(request, "records/record_detail.html", context)


@role_required("clinician")
@not_found_as_404
@require_http_methods(["GET", "POST"])
def record_edit(request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
    identity = page_identity(request)
    if request.method == "GET":
        record = services.get_record(identity, pk)
        rows = lab_rows(record.lab_results)
        initial = {name: getattr(record, name) for name in FIELD_LABELS if name != "lab_results"}
        form = RecordEditForm(initial={**initial, "version": record.row_version})
        return _record_edit_page(request, record, form, lab_formset(rows=rows) if rows is not None else None)
    record = get_visible(MedicalRecord, pk, action="record.update")  # as the API's PATCH
    rows = lab_rows(record.lab_results)
    form = RecordEditForm(request.POST)
    labs = lab_formset(request.POST) if rows is not None else None
    if not (form.is_valid() and (labs is None or labs.is_valid())):
        return _record_edit_page(request, record, form, labs)
    if form.cleaned_data["version"] != record.row_version:  # saved by someone else since the form opened
        form.add_error(None, CHANGED_MEANWHILE)
        return _record_edit_page(request, record, form, labs, status=409)
    changes = form.changes(record)
    if labs is not None and labs.lab_results() != record.lab_results:
        changes["lab_results"] = labs.lab_results()
    if not changes:
        messages.info(request, "Nothing was changed.")
        return redirect("records:record", pk=record.pk)
    updated, status = _attempt(form, lambda: services.update_record(identity, record, changes))
    if updated is None:
        return _record_edit_page(request, record, form, labs, status=status)
    messages.success(request, "The record was updated; its previous state is kept in its history.")
    return redirect("records:record", pk=record.pk)


def _record_edit_page(
    request: HttpRequest, record: MedicalRecord, form: RecordEditForm, labs: Any, *, status: int = 200
) -> HttpResponse:
    identity = page_identity(request)
    context = {
        "record": record,
        "patient_name": services.names_for([record]).patients.get(record.patient_id),
        "form": form,
        "labs": labs,
        "emergency": access_purpose(identity, record.patient_id) == "emergency",
    }
    return render(request, "records/record_form.html", context, status=status)


# -- Appointments ------------------------------------------------------------------------------


@role_required("clinician")
@not_found_as_404
@require_http_methods(["GET", "POST"])
def appointment_new(request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
    identity = page_identity(request)
    patient = get_patient(identity, pk)
    form = AppointmentForm(request.POST if request.method == "POST" else None)
    status = 200
    if form.is_bound and form.is_valid():
        data = dict(form.cleaned_data)
        appointment, status = _attempt(form, lambda: services.create_appointment(identity, patient.pk, data))
        if appointment is not None:
            messages.success(request, f"The appointment on {_when(appointment.scheduled_at)} was booked.")
            return redirect(_next(request, reverse("patients:chart", kwargs={"pk": patient.pk})))
    context = {
        "patient_id": patient.pk,
        "patient_name": patient.full_name,
        "form": form,
        "next": _next(request, ""),
        "emergency": access_purpose(identity, patient.pk) == "emergency",
    }
    return render(request, "records/appointment_form.html", context, status=status)


@role_required("clinician")
@require_GET
def schedule(request: HttpRequest) -> HttpResponse:
    """The clinician's own appointments, earliest first, from today unless days are chosen."""
    identity = page_identity(request)
    filters = ScheduleFilterForm(request.GET)
    rows, more = [], None
    try:
        dates = date_range(request.GET)
        if dates.start is None and dates.end is None:
            dates = DateRange(start=timezone.localdate())
        page = services.list_appointments(
            identity, provider_id=identity.user_id, page=page_request(request.GET), dates=dates
        )
    except ValidationError as error:
        show_service_errors(filters, error)
    else:
        names = services.names_for(page.items).patients
        rows = [{"appointment": a, "patient_name": names.get(a.patient_id)} for a in page.items]
        more = next_link(request.path, request.GET, page)
    context = {"filters": filters, "rows": rows, "more": more, "open_statuses": services.CANCELLABLE}
    return render(request, "records/schedule.html", context)


@role_required("clinician")
@not_found_as_404
@require_POST
def appointment_confirm(request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
    """A requested appointment becomes confirmed (services.confirm_appointment)."""
    back = _next(request, reverse("records:schedule"))
    _act(
        request,
        lambda: services.confirm_appointment(page_identity(request), pk),
        "The appointment on {when} is confirmed.",
    )
    return redirect(back)


@role_required("clinician")
@not_found_as_404
@require_http_methods(["GET", "POST"])
def appointment_reschedule(request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
    identity = page_identity(request)
    appointment = services.get_appointment(identity, pk)
    initial = {"scheduled_at": appointment.scheduled_at, "duration_minutes": appointment.duration_minutes}
    form = RescheduleForm(request.POST if request.method == "POST" else None, initial=initial)
    status = 200
    if form.is_bound and form.is_valid():
        data = form.cleaned_data
        moved, status = _attempt(form, lambda: services.reschedule_appointment(identity, appointment.pk, **data))
        if moved is not None:
            messages.success(request, f"The appointment was moved to {_when(moved.scheduled_at)}.")
            return redirect(_next(request, reverse("records:schedule")))
    context = {
        "appointment": appointment,
        "patient_name": services.names_for([appointment]).patients.get(appointment.patient_id),
        "form": form,
        "next": _next(request, ""),
        "changeable": appointment.status in services.CANCELLABLE,
        "emergency": access_purpose(identity, appointment.patient_id) == "emergency",
    }
    return render(request, "records/appointment_form.html", context, status=status)


@role_required("clinician")
@not_found_as_404
@require_POST
def appointment_cancel(request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
    back = _next(request, reverse("records:schedule"))
    identity = page_identity(request)
    _act(request, lambda: services.cancel_appointment(identity, pk), "The appointment on {when} was cancelled.")
    return redirect(back)
