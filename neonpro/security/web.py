"""What every page view of the web UI shares: who is asking, which role may open the page,
and the service errors a page shows.

Pages are thin: they call the same services as the API (which check rights, own the
transaction and write the audit event, with its purpose), and only translate the answers:

* ``role_required("clinician")`` admits the signed-in people of those roles (agents never:
  a credential for the API is no way into the web UI); anyone else gets the 403 page.
* ``not_found_as_404`` turns a service's ``DoesNotExist`` into the one 404 page, so a patient
  the caller may not see and one that does not exist look the same.
* ``show_service_errors(form, error)`` puts a service's ``ValidationError`` next to the
  fields it names (anything else at the top of the form).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import ObjectDoesNotExist, PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse

from neonpro.security.context import Identity, current_identity

NOT_FOUND = "Not found."  # the one message of every 404, whatever the reason


def page_identity(request: HttpRequest) -> Identity:
    identity = current_identity()
    if identity is None:  # pragma: no cover - RequestContextMiddleware always sets one
        raise RuntimeError("no request identity: RequestContextMiddleware is not installed")
    return identity


def role_required(*roles: str) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """Signed in (else the sign-in page, then back) with one of ``roles`` (else 403)."""

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @functools.wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if page_identity(request).role not in roles:
                raise PermissionDenied("Your role cannot open this page.")
            return view(request, *args, **kwargs)

        return wrapped

    return decorate


def not_found_as_404(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """A row the caller may not see, or that does not exist: the same 404 page (the service
    has already audited the refusal)."""

    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return view(request, *args, **kwargs)
        except ObjectDoesNotExist:
            raise Http404(NOT_FOUND) from None

    return wrapped


def audit_refusal(request: HttpRequest | None = None, *, refused: str = "permission") -> None:
    """A ``page.denied`` audit event for a page a role may not open, or a change a service
    refused (read-only emergency access, not on the care team): as the API's ``api.denied``,
    the view and method, never a value."""
    from neonpro.audit.services import record_event

    details: dict[str, Any] = {"refused": refused}
    resource_id = None
    match = getattr(request, "resolver_match", None)
    if request is not None:
        details["method"] = request.method
        if match is not None:
            details["view"] = match.view_name
            resource_id = match.kwargs.get("pk")
    record_event("page.denied", outcome="denied", resource_id=resource_id, details=details)


def show_service_errors(form: forms.BaseForm, error: ValidationError) -> None:
    """Attach a service's ValidationError to the form: by field where it names one the form
    has, the rest as errors of the whole form."""
    if hasattr(error, "error_dict"):
        for name, errors in error.error_dict.items():
            form.add_error(name if name in form.fields else None, [message for e in errors for message in e.messages])
    else:
        form.add_error(None, error.messages)
