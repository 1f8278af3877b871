"""Error pages: JSON for API clients, HTML for people, never a traceback or PHI.

Django answers a URL no route matches (an unknown path, or an id that is not a UUID) before
any API view runs, so DRF's exception handler never sees it; these handlers give every
``/api/`` path the same JSON shape as the API's own errors (``{"error": {"code", "message", "fields"}}``,
neonpro/security/error_body.py), and every
other path a plain page. Wired in ``neonpro/urls.py`` (handler400/403/404/500) and as
``CSRF_FAILURE_VIEW``.
"""

from __future__ import annotations

import sys
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from django.views.csrf import csrf_failure as django_csrf_failure

from neonpro.security.error_body import error_response
from neonpro.security.unavailable import infrastructure_reason, unavailable_response

API_PREFIX = "/api/"


def is_api(request: HttpRequest) -> bool:
    return request.path.startswith(API_PREFIX)


def _json(code: str, message: str, status: int) -> JsonResponse:
    return error_response(code, message, status)


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if is_api(request) and isinstance(exception, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return _json("too_large", f"The request body is too large: at most {limit} bytes.", 413)
    if is_api(request):
        return _json("bad_request", "Bad request.", 400)
    return defaults.bad_request(request, exception)  # type: ignore[arg-type]


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if is_api(request):
        return _json("permission_denied", "You do not have permission to perform this action.", 403)
    if getattr(request, "user", None) is not None and request.user.is_authenticated:
        from neonpro.security.web import audit_refusal

        audit_refusal(request, refused="role")  # as the API's api.denied: the 403 page says it is recorded
    return defaults.permission_denied(request, exception)  # type: ignore[arg-type]


def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if is_api(request):
        return _json("not_found", "Not found.", 404)
    return defaults.page_not_found(request, exception)  # type: ignore[arg-type]


def server_error(request: HttpRequest) -> HttpResponse:
    # Called while Django handles the exception: a database, pool, cache or key provider that
    # is not there is a 503 with Retry-After (neonpro/security/unavailable.py), not a 500.
    reason = infrastructure_reason(sys.exc_info()[1])
    if reason is not None:
        return unavailable_response(request, reason)
    if is_api(request):
        return _json("server_error", "Internal error; it has been logged (without any patient data).", 500)
    return defaults.server_error(request)


def audit_unavailable(request: HttpRequest) -> HttpResponse:
    """503 when no audit event can be written: the request was refused, nothing was read or
    changed; retrying later is the right thing to do."""
    detail = "The audit log is unavailable, so this request was refused; try again shortly."
    response: HttpResponse
    response = _json("audit_unavailable", detail, 503) if is_api(request) else HttpResponse(detail, status=503)
    response["Retry-After"] = "30"
    return response


def csrf_failure(request: HttpRequest, reason: str = "", **kwargs: Any) -> HttpResponse:
    if is_api(request):
        message = "CSRF check failed: send the X-CSRFToken header and an HTTPS Referer of this site."
        return _json("csrf_failed", message, 403)
    return django_csrf_failure(request, reason=reason, **kwargs)
