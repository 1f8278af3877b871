"""The one error body of the API: ``{"error": {"code", "message", "fields"}}``, for every 4xx and 5xx.

``code`` is a stable machine-readable word (``not_found``, ``invalid``, ``not_authenticated``,
``permission_denied``, ``throttled``, ``service_unavailable``, ...), ``message`` a sentence a
person can act on, and ``fields`` maps each invalid input field to its messages (``{}`` when the
error is not about a field; nested fields are dotted: ``address.city``, list items indexed:
``tags.0``). Nothing in it ever repeats a submitted value, so no PHI travels back in an error.
Built here for DRF's exceptions (``neonpro.security.api.exception_handler``) and for the
responses Django and the ASGI admission gate make before any view runs
(``neonpro.security.errors``, ``neonpro.security.unavailable``, ``neonpro.security.admission``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.http import JsonResponse

NON_FIELD_KEYS = ("non_field_errors", "__all__")
INVALID = "invalid"
INVALID_MESSAGE = "The request is invalid; see fields."


def error_body(code: str, message: str, fields: Mapping[str, list[str]] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "fields": dict(fields or {})}}


def error_response(
    code: str, message: str, status: int, *, fields: Mapping[str, list[str]] | None = None
) -> JsonResponse:
    return JsonResponse(error_body(code, message, fields), status=status)


def flatten_fields(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """Field errors of a (possibly nested) DRF or Django error detail, by dotted field name."""
    fields: dict[str, list[str]] = {}
    if isinstance(detail, Mapping):
        for key, value in detail.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            for inner, messages in flatten_fields(value, name).items():
                fields.setdefault(inner, []).extend(messages)
    elif isinstance(detail, list | tuple) and any(isinstance(item, Mapping | list | tuple) for item in detail):
        for index, value in enumerate(detail):
            for inner, messages in flatten_fields(value, f"{prefix}.{index}" if prefix else str(index)).items():
                fields.setdefault(inner, []).extend(messages)
    elif isinstance(detail, list | tuple):
        fields[prefix] = [str(item) for item in detail]
    else:
        fields[prefix] = [str(detail)]
    return fields


def validation_body(detail: Any) -> dict[str, Any]:
    """The body of a validation failure: field messages under ``fields``, form-wide ones as the message."""
    fields = flatten_fields(detail)
    general: list[str] = []
    for key in ("", *NON_FIELD_KEYS):
        general.extend(fields.pop(key, []))
    message = " ".join(general) if general else INVALID_MESSAGE
    return error_body(INVALID, message, fields)
