"""Clinician pages for patients (stub until built)."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse


def _pending(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
    raise Http404("not built yet")


patient_list = _pending
patient_search = _pending
patient_chart = _pending
reveal_ssn = _pending
break_glass = _pending
break_glass_end = _pending
