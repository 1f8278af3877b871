"""API plumbing shared by every app: error mapping, role and scope permissions, body limits.

Errors are specific and safe: a row the caller cannot see is a plain 404, a validation
problem names the field, and anything unexpected is a bare 500 (details go to the log,
never PHI — the logging filter redacts PHI-shaped values).

Agents reach a view only where it names the scope a method needs (``required_scopes``,
e.g. ``{"GET": "records:read"}``) and the agent's credential carries it: a view that names
none is closed to agents, whatever its role permission says.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import ObjectDoesNotExist
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import permissions, status
from rest_framework.exceptions import (
    APIException,
    NotAuthenticated,
    NotFound,
    ParseError,
    PermissionDenied,
    ValidationError,
)
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response

from keys.exceptions import ProviderError, RowIntegrityError, StaleRowError
from neonpro.audit.services import AuditUnavailableError, record_event
from neonpro.security import scopes
from neonpro.security.context import Identity, current_identity
from neonpro.security.error_body import error_body, validation_body
from neonpro.security.unavailable import RETRY_AFTER_SECONDS, infrastructure_reason

logger = logging.getLogger(__name__)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    # rest_framework.views reads the parser classes (ours, below) when it is first imported.
    from rest_framework.views import exception_handler as drf_exception_handler
    from rest_framework.views import set_rollback

    if isinstance(exc, PermissionDenied | DjangoPermissionDenied | NotAuthenticated):
        _audit_refusal(context)
    if isinstance(exc, ObjectDoesNotExist):
        return Response(error_body("not_found", "Not found."), status=status.HTTP_404_NOT_FOUND)
    if isinstance(exc, DjangoValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        return Response(validation_body(detail), status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, StaleRowError):
        message = "The record changed meanwhile; reload it and try again."
        return Response(error_body("conflict", message), status=409)
    if isinstance(exc, RowIntegrityError):  # already audited where it was detected
        logger.error("row integrity check failed: %s", exc)
        message = "This record failed its integrity check; the incident was recorded."
        return Response(error_body("integrity_failed", message), status=500)
    if isinstance(exc, AuditUnavailableError):
        set_rollback()
        message = "The audit log is unavailable, so this request was refused; try again shortly."
        return Response(error_body("audit_unavailable", message), status=503, headers={"Retry-After": "30"})
    if isinstance(exc, ProviderError):
        set_rollback()
        logger.error("key provider unavailable: %s", type(exc).__name__)
        message = "Encryption service unavailable; try again shortly."
        headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
        return Response(error_body("service_unavailable", message), status=503, headers=headers)
    reason = infrastructure_reason(exc)
    if reason is not None:
        set_rollback()
        logger.error("service unavailable: %s", reason)
        message = f"Service temporarily unavailable: {reason}. Try again shortly."
        headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
        return Response(error_body("service_unavailable", message), status=503, headers=headers)
    if isinstance(exc, Http404):
        exc = NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(exc, APIException):
        response.data = _api_exception_body(exc)
    return response


def _api_exception_body(exc: APIException) -> dict[str, Any]:
    if isinstance(exc, ValidationError):
        return validation_body(exc.detail)
    codes = exc.get_codes()
    code = codes if isinstance(codes, str) else exc.default_code
    return error_body(str(code), str(exc.detail))


def _audit_refusal(context: dict[str, Any]) -> None:
    """A refused request (403) leaves a ``denied`` event naming what was asked for."""
    view, request = context.get("view"), context.get("request")
    kwargs = context.get("kwargs") or {}
    details = {"view": type(view).__name__ if view else None, "method": getattr(request, "method", None)}
    identity = current_identity()
    if identity is not None and identity.role == "agent":
        details["scope"] = required_scope(view, details["method"])  # None: the view is closed to agents
    record_event("api.denied", outcome="denied", resource_id=kwargs.get("pk"), details=details)


def identity_of(request: Request) -> Identity:
    identity = current_identity()
    if identity is None:  # pragma: no cover - the middleware always sets one
        raise RuntimeError("no request identity: RequestContextMiddleware is not installed")
    return identity


def required_scope(view: Any, method: str | None) -> str | None:
    """The scope ``view`` asks of an agent for ``method`` (HEAD as GET); None if it names none."""
    declared = getattr(view, "required_scopes", None) or {}
    return declared.get("GET" if method == "HEAD" else method)  # type: ignore[no-any-return]


def scope_admits(request: Request, view: Any) -> bool:
    """Whether an agent's credential carries the scope the view names for this method."""
    scope = required_scope(view, request.method)
    admitted = scope is not None and scopes.granted(identity_of(request), scope)
    # The request audit (neonpro.accounts.agent_auth) records the scope that admitted it.
    request._request.api_scope = scope if admitted else None  # type: ignore[attr-defined]
    return admitted


class HasScope(permissions.BasePermission):
    """Agents need the scope the view names for the method (403 without); everyone else passes
    here, their role permissions decide."""

    message = "This agent's credential does not carry the scope this request needs."

    def has_permission(self, request: Request, view: Any) -> bool:
        return identity_of(request).role != "agent" or scope_admits(request, view)


class HasCareRole(permissions.BasePermission):
    """Patients and clinicians work with PHI; administrators manage, they do not read. Agents
    only where the view names a scope for the method and their credential carries it."""

    message = "Your role has no access to patient data."

    def has_permission(self, request: Request, view: Any) -> bool:
        role = identity_of(request).role
        return role in ("patient", "clinician") or (role == "agent" and scope_admits(request, view))


class IsClinician(permissions.BasePermission):
    """Clinicians; agents only where the view names a scope for the method and they hold it."""

    message = "Only clinicians can do this."

    def has_permission(self, request: Request, view: Any) -> bool:
        role = identity_of(request).role
        return role == "clinician" or (role == "agent" and scope_admits(request, view))


MAX_JSON_DEPTH = 32
DEFAULT_MAX_BODY_BYTES = 1024 * 1024


def max_body_bytes() -> int:
    """The largest request body the API parses (``NEONPRO_API_MAX_BODY_BYTES``, default 1 MiB)."""
    from django.conf import settings

    return int(getattr(settings, "NEONPRO_API_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES))


class RequestTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "request_too_large"


class BoundedJSONParser(JSONParser):
    """DRF's JSON parser, refusing bodies over ``max_body_bytes()`` with a 413 and documents
    nested deeper than ``MAX_JSON_DEPTH`` with a 400.

    DRF reads the body as a stream, so Django's ``DATA_UPLOAD_MAX_MEMORY_SIZE`` (which guards
    ``request.body`` and form posts) never applies to it: the limit is enforced here, on the
    declared length, before anything is read. Python's decoder gives up with
    RecursionError near 1,000 levels (a 500), and what it does parse deeply must still be
    validated, encrypted and serialised by recursive code. No request of this API needs more
    than a few levels.
    """

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        # DRF parses only a body with a valid Content-Length (read as DRF reads it), and Django's
        # stream never yields more than it declares.
        limit = max_body_bytes()
        meta = parser_context["request"].META
        if int(meta.get("CONTENT_LENGTH", meta.get("HTTP_CONTENT_LENGTH", 0))) > limit:
            raise RequestTooLarge(f"The request body is larger than this API accepts ({limit} bytes).")
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(f"JSON nested too deeply: at most {MAX_JSON_DEPTH} levels") from None
        if _depth_exceeds(data, MAX_JSON_DEPTH):
            raise ParseError(f"JSON nested too deeply: at most {MAX_JSON_DEPTH} levels")
        return data


def _depth_exceeds(data: Any, limit: int) -> bool:
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth > limit:
                return True
            children = value.values() if isinstance(value, dict) else value
            stack.extend((child, depth + 1) for child in children)
    return False
