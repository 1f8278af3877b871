"""Clinician pages for records and appointments (stub until built)."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse


def _pending(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
    raise Http404("not built yet")


record_new = _pending
record_detail = _pending
record_edit = _pending
appointment_new = _pending
schedule = _pending
appointment_confirm = _pending
appointment_reschedule = _pending
appointment_cancel = _pending
