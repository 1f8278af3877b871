"""The clinician's patient pages: "My patients", "Find a patient", the chart, revealing an SSN,
and break-glass (emergency access) with its banner.

Thin over the services (patients.services, patients.break_glass, records.services), which
check rights, own the transaction and write the audit event with its purpose. Identifiers
(SSN, MRN, email, phone) only ever travel in POST bodies, and a search's results are the
POST's own response.

A chart the clinician may not open (unknown id, or a patient outside their care team without
a grant) is one 404 page, and for clinicians that page always offers emergency access:
offering it on every such 404 says nothing about whether the patient exists, and attempts on
unknown ids count against the clinician's break-glass ceilings (patients.break_glass).
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from neonpro.accounts.reauth import reauth_required, reauthenticated_recently
from neonpro.accounts.sessions import rotate_session
from neonpro.security.filters import DateRange
from neonpro.security.pagination import next_link, page_request
from neonpro.security.web import not_found_as_404, page_identity, role_required, show_service_errors
from patients import break_glass as glass
from patients import services
from patients.forms import EmergencyAccessByIdentifierForm, EmergencyAccessForm, SearchForm
from patients.models import Patient
from patients.serializers import mask_ssn
from records.services import (
    list_appointments,
    list_records,
    medication_and_allergy_history,
    names_for,
    next_appointments,
)

BAD_PAGE = "That page link is no longer valid; here is the first page again."
GRANTED = "Emergency access granted: read-only, time-limited, and reviewed by the privacy office."
NO_SINGLE_PATIENT = "No single patient has that identifier (or none you could reach)."


@role_required("clinician")
@require_GET
def patient_list(request: HttpRequest) -> HttpResponse:
    identity = page_identity(request)
    try:
        page = services.list_patients(identity, page=page_request(request.GET))
    except ValidationError:  # a cursor or page size not ours (or not for this clinician)
        messages.error(request, BAD_PAGE)
        return redirect("patients:list")
    upcoming = next_appointments(identity, [patient.pk for patient in page.items])
    context = {
        "rows": [{"patient": patient, "next": upcoming.get(patient.pk)} for patient in page.items],
        "next_url": next_link(reverse("patients:list"), request.GET, page),
        "search_form": SearchForm(),
    }
    return render(request, "patients/list.html", context)


@role_required("clinician")
@require_http_methods(["GET", "POST"])
def patient_search(request: HttpRequest) -> HttpResponse:
    """GET: the form. POST: the search, its results in this response (never in a URL)."""
    form = SearchForm(request.POST) if request.method == "POST" else SearchForm()
    context: dict[str, Any] = {"form": form, "results": None}
    if request.method == "POST" and form.is_valid():
        try:
            context["results"] = services.search_patients(page_identity(request), **form.cleaned_data)
        except ValidationError as error:
            show_service_errors(form, error)
    if context["results"] == []:  # none in the clinician's care: offer break-glass by the identifier
        field, value = form.cleaned_data["field"], form.cleaned_data["value"]
        context.update(
            emergency_form=EmergencyAccessByIdentifierForm(initial={"identifier": field, "value": value}),
            field_label=dict(form.fields["field"].choices)[field],  # type: ignore[attr-defined]
            reauth_fresh=reauthenticated_recently(request),
        )
    return render(request, "patients/search.html", context)


@role_required("clinician")
@require_GET
def patient_chart(request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
    return _chart(request, pk)


@role_required("clinician")
@require_POST
def reveal_ssn(request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
    """The chart with the full SSN, rendered from this POST (not stored, not in a URL)."""
    try:
        ssn = services.reveal_ssn(page_identity(request), pk)
    except Patient.DoesNotExist:
        return _chart_not_found(request, pk)
    except PermissionDenied as refused:  # under break-glass (audited by the service)
        messages.error(request, str(refused))
        return redirect("patients:chart", pk=pk)
    return _chart(request, pk, ssn=ssn)


def _chart(request: HttpRequest, pk: uuid.UUID, *, ssn: str | None = None) -> HttpResponse:
    identity = page_identity(request)
    try:
        patient = services.get_patient(identity, pk)  # audited: patient.read, treatment or emergency
        records = list_records(identity, patient.pk, page=page_request(request.GET))
        appointments = list_appointments(identity, patient_id=patient.pk, dates=DateRange(start=timezone.localdate()))
        history = medication_and_allergy_history(identity, patient.pk)  # all records, not this page
    except Patient.DoesNotExist:
        return _chart_not_found(request, pk)
    except ValidationError:  # a timeline cursor not ours
        messages.error(request, BAD_PAGE)
        return redirect("patients:chart", pk=pk)
    grant = services.emergency_grant(identity, patient.pk)
    record_names, appointment_names = names_for(records.items), names_for(appointments.items)
    context = {
        "patient": patient,
        "ssn": ssn if ssn is not None else mask_ssn(patient.ssn),
        "revealed": ssn is not None,
        "timeline": [
            {"record": r, "provider": record_names.clinicians.get(r.provider_id, ""), "labs": lab_rows(r.lab_results)}
            for r in records.items
        ],
        "medications": [r for r in history if r.medications],
        "allergies": [r for r in history if r.allergies],
        "older_url": next_link(reverse("patients:chart", args=[patient.pk]), request.GET, records),
        "appointments": [
            {"appointment": a, "provider": appointment_names.clinicians.get(a.provider_id, "")}
            for a in appointments.items
        ],
        "more_appointments": appointments.next_cursor is not None,
        "read_only": grant is not None,
        **_banner(grant),
    }
    return render(request, "patients/chart.html", context)


def _chart_not_found(request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
    """The one 404 page, with the emergency-access offer (for every id alike: see the module)."""
    context = {"pk": pk, "form": EmergencyAccessForm(), "reauth_fresh": reauthenticated_recently(request)}
    return render(request, "patients/not_found.html", context, status=404)


def _banner(grant: Any) -> dict[str, Any]:
    if grant is None:
        return {"grant": None}
    left = math.ceil((grant.expires_at - timezone.now()).total_seconds() / 60)
    return {"grant": grant, "until": grant.expires_at.astimezone(dt.UTC), "minutes_left": max(left, 1)}


def lab_rows(results: Any) -> list[tuple[str, str, str]]:
    """Lab results (free-form JSON) as (test, value, unit) rows: ``{"hba1c": 7.9}`` and
    ``{"eosinophils": {"value": 0.4, "unit": "10^9/L"}}`` alike; anything else as one row."""
    if results in (None, "", {}, []):
        return []
    if not isinstance(results, dict):
        return [("", str(results), "")]
    rows = []
    for name, result in results.items():
        if isinstance(result, dict) and "value" in result:
            rows.append((str(name), str(result["value"]), str(result.get("unit", ""))))
        else:
            rows.append((str(name), str(result), ""))
    return rows


@role_required("clinician")
@require_http_methods(["GET", "POST"])
@reauth_required
@not_found_as_404
def break_glass(request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
    """Break-glass for one patient by id: the reason and duration (GET: the form, the no-script
    version of the chart's dialog; POST: the request)."""
    form = EmergencyAccessForm(request.POST) if request.method == "POST" else EmergencyAccessForm()
    context: dict[str, Any] = {"form": form, "pk": pk}
    if request.method == "POST" and form.is_valid():
        try:
            grant = glass.request_emergency_access(page_identity(request), patient_id=pk, **_reason(form))
        except ValidationError as error:
            show_service_errors(form, error)
        except glass.EmergencyAccessLimitError as refused:
            return _refused(request, "patients/break_glass.html", context, refused, pk)
        else:
            return _granted(request, grant)
    return render(request, "patients/break_glass.html", context)


@role_required("clinician")
@require_http_methods(["GET", "POST"])
@reauth_required
def break_glass_by_identifier(request: HttpRequest) -> HttpResponse:
    """Break-glass for the patient an identifier names (from a search that found no patient in
    the clinician's care); the identifier stays in the POST body."""
    post = request.method == "POST"
    form = EmergencyAccessByIdentifierForm(request.POST) if post else EmergencyAccessByIdentifierForm()
    context: dict[str, Any] = {"form": form}
    status = 200
    if post and form.is_valid():
        data = form.cleaned_data
        try:
            grant = glass.request_emergency_access_by_identifier(
                page_identity(request), identifier=data["identifier"], value=data["value"], **_reason(form)
            )
        except ValidationError as error:
            show_service_errors(form, error)
        except Patient.DoesNotExist:
            form.add_error(None, NO_SINGLE_PATIENT)
            status = 404
        except glass.EmergencyAccessLimitError as refused:
            return _refused(request, "patients/break_glass_identifier.html", context, refused, None)
        else:
            return _granted(request, grant)
    return render(request, "patients/break_glass_identifier.html", context, status=status)


def _reason(form: EmergencyAccessForm) -> dict[str, Any]:
    return {"reason": form.cleaned_data["reason"], "minutes": form.cleaned_data["minutes"]}


def _granted(request: HttpRequest, grant: Any) -> HttpResponse:
    rotate_session(request)  # elevated access: a new session id (ASVS 3.2.1), as the API does
    messages.warning(request, GRANTED)
    return redirect("patients:chart", pk=grant.patient_id)


def _refused(
    request: HttpRequest,
    template: str,
    context: dict[str, Any],
    refused: glass.EmergencyAccessLimitError,
    pk: uuid.UUID | None,
) -> HttpResponse:
    """Too many uses (429, how long to wait) or a grant already running (409, until when)."""
    until = refused.expires_at.astimezone(dt.UTC) if refused.expires_at else None
    context.update(refusal=str(refused), refusal_until=until, pk=pk)
    return render(request, template, context, status=429 if refused.retry_after is not None else 409)


@role_required("clinician")
@require_POST
@not_found_as_404
def break_glass_end(request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
    glass.end_emergency_access(page_identity(request), pk)
    messages.success(request, "Emergency access ended.")
    return redirect("patients:list")
