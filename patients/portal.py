"""The patient portal (stub until built)."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse


def _pending(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
    raise Http404("not built yet")


portal_home = _pending
contact = _pending
appointment_request = _pending
appointment_cancel = _pending
export = _pending
