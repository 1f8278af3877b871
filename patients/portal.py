"""The patient portal (``/portal/``): a patient's own record, contact details, appointment
requests and the export of their data.

Thin pages over patients.services and records.services, which check rights, own the
transaction and write the audit event. The patient is always the one linked to the signed-in
account (``patient_id_for_user``): no page takes a patient id, and an appointment id that is
not the patient's own gets the one 404 page (row-level security and the scoped managers
leave other patients' rows out).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import uuid
from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from neonpro.accounts.people import display_name
from neonpro.accounts.reauth import reauth_url, reauthenticated_recently
from neonpro.security.access import get_visible
from neonpro.security.filters import DateRange
from neonpro.security.pagination import PageRequest
from neonpro.security.web import not_found_as_404, page_identity, role_required, show_service_errors
from patients import services
from patients.api import export_disposition
from patients.models import Patient
from patients.portal_forms import AppointmentRequestForm, ContactForm
from patients.serializers import mask_ssn
from records import services as records
from records.models import Appointment

RECORDS_CURSOR = "records"
APPOINTMENTS_CURSOR = "appointments"
PAST = "past"
PAGE_SIZE = 50  # rows of each list per page (a link leads to the next)
STALE_LINK = "That page link is no longer valid; here is the start of your record again."


def _own_patient(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Call ``view`` with the id of the patient linked to the account, or show the page that
    says no record is linked (an account made before its patient was registered)."""

    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        patient_id = services.patient_id_for_user(request.user.pk)
        if patient_id is None:
            return render(request, "portal/unlinked.html")
        return view(request, patient_id, *args, **kwargs)

    return wrapped


@role_required("patient")
@require_GET
@not_found_as_404
@_own_patient
def portal_home(request: HttpRequest, patient_id: uuid.UUID) -> HttpResponse:
    identity = page_identity(request)
    past = request.GET.get(PAST) == "1"
    today = timezone.localdate()
    when = DateRange(end=today - dt.timedelta(days=1)) if past else DateRange(start=today)
    patient = services.get_patient(identity, patient_id)
    try:
        record_page = records.list_records(identity, patient_id, page=_page(request, RECORDS_CURSOR))
        appointment_page = records.list_appointments(
            identity, patient_id=patient_id, page=_page(request, APPOINTMENTS_CURSOR), dates=when
        )
    except ValidationError:  # a cursor not issued to this patient for this list, or tampered
        messages.error(request, STALE_LINK)
        return redirect("portal:home")
    names = records.names_for([*record_page.items, *appointment_page.items]).clinicians
    context = {
        "patient": patient,
        "masked_ssn": mask_ssn(patient.ssn),
        "records": [_record_row(r, names) for r in record_page.items],
        "records_next": record_page.next_cursor,
        "appointments": [_appointment_row(a, names) for a in appointment_page.items],
        "appointments_next": appointment_page.next_cursor,
        "past": past,
    }
    return render(request, "portal/home.html", context)


def _page(request: HttpRequest, param: str) -> PageRequest:
    return PageRequest(size=PAGE_SIZE, cursor=request.GET.get(param) or None)


def _record_row(record: Any, names: dict[uuid.UUID, str]) -> dict[str, Any]:
    return {"record": record, "provider": names.get(record.provider_id, ""), "labs": _lab_lines(record.lab_results)}


def _appointment_row(appointment: Appointment, names: dict[uuid.UUID, str]) -> dict[str, Any]:
    return {
        "appointment": appointment,
        "provider": names.get(appointment.provider_id, ""),
        "cancellable": appointment.status in records.CANCELLABLE,
    }


def _lab_lines(results: Any) -> list[tuple[str, str]]:
    """Lab results (free-form JSON) as (test, result) lines: ``{"value", "unit"}`` reads as
    "0.4 10^9/L", anything else as its JSON text."""
    if results in (None, {}, []):
        return []
    if not isinstance(results, dict):
        return [("", _lab_text(results))]
    return [(str(name), _lab_text(value)) for name, value in results.items()]


def _lab_text(value: Any) -> str:
    if isinstance(value, dict) and "value" in value and set(value) <= {"value", "unit"}:
        return f"{value['value']} {value.get('unit', '')}".strip()
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


@role_required("patient")
@require_http_methods(["GET", "POST"])
@not_found_as_404
@_own_patient
def contact(request: HttpRequest, patient_id: uuid.UUID) -> HttpResponse:
    identity = page_identity(request)
    if request.method != "POST":
        patient = services.get_patient(identity, patient_id)
        initial = {name: getattr(patient, name) for name in ContactForm.base_fields}
        return render(request, "portal/contact.html", {"form": ContactForm(initial=initial)})
    patient = get_visible(Patient, patient_id, action="patient.update")
    form = ContactForm(request.POST)
    if form.is_valid():
        changes = form.changes_to(patient)
        if not changes:
            messages.info(request, "Nothing changed: your contact details are as they were.")
            return redirect("portal:home")
        try:
            services.update_patient(identity, patient, changes)
        except ValidationError as error:
            show_service_errors(form, error)
        else:
            messages.success(request, "Your contact details and choices were saved.")
            return redirect("portal:home")
    return render(request, "portal/contact.html", {"form": form})


@role_required("patient")
@require_http_methods(["GET", "POST"])
@not_found_as_404
@_own_patient
def appointment_request(request: HttpRequest, patient_id: uuid.UUID) -> HttpResponse:
    identity = page_identity(request)
    team = services.list_care_team(identity, patient_id).items
    clinicians = [(str(user.pk), display_name(user)) for user in team]
    if request.method != "POST":
        form = AppointmentRequestForm(clinicians=clinicians)
        return render(request, "portal/appointment_new.html", {"form": form, "has_team": bool(team)})
    form = AppointmentRequestForm(request.POST, clinicians=clinicians)
    if form.is_valid():
        try:
            records.create_appointment(identity, patient_id, dict(form.cleaned_data))
        except ValidationError as error:
            show_service_errors(form, error)
        else:
            messages.success(request, "Your request was sent; the clinic will confirm the time.")
            return redirect("portal:home")
    return render(request, "portal/appointment_new.html", {"form": form, "has_team": bool(team)})


@role_required("patient")
@require_POST
@not_found_as_404
@_own_patient
def appointment_cancel(request: HttpRequest, patient_id: uuid.UUID, pk: uuid.UUID) -> HttpResponse:
    try:
        records.cancel_appointment(page_identity(request), pk)
    except records.AppointmentStateError as refused:
        messages.error(request, str(refused))
    else:
        messages.success(request, "The appointment is cancelled.")
    return redirect("portal:home")


@role_required("patient")
@require_http_methods(["GET", "POST"])
@not_found_as_404
@_own_patient
def export(request: HttpRequest, patient_id: uuid.UUID) -> HttpResponse:
    """GET: what the download holds, and its button; POST: the download (a POST, so no other
    site can make a browser fetch it with a link or an image)."""
    if request.method != "POST":
        return render(request, "portal/export.html")
    if not reauthenticated_recently(request):  # the whole record, full SSN included: who is asking?
        return HttpResponseRedirect(reauth_url(reverse("portal:export")))
    bundle = services.export_patient(page_identity(request), patient_id)
    return JsonResponse(bundle, json_dumps_params={"indent": 2}, headers={"Content-Disposition": export_disposition()})
