"""The OpenAPI description of the API (drf-spectacular): what every operation shares.

Views declare their own request and response shapes (``extend_schema``); this adds, to every
operation, what the plumbing guarantees, so that the schema is exact enough to fuzz against
(tests/api/test_schemathesis.py):

* **security**: a session cookie (people; unsafe methods also need the CSRF header) or a
  bearer token (``Authorization: Bearer npa_…``, agents); public operations need neither;
* **errors**: each 4xx and 5xx the operation can answer, every one with the one error body
  (the ``Error`` component, neonpro/security/error_body.py);
* **headers**: ``Cache-Control: no-store`` and ``X-Request-ID`` on every response,
  ``Retry-After`` on 429 and 503, ``WWW-Authenticate`` on 401;
* **strict input**: request bodies of a ``StrictSerializer`` are ``additionalProperties: false``.

Lists add ``page_parameters()`` and ``LINK_HEADER``; date filters ``date_range_parameters()``.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import ResolvedComponent
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import permissions, serializers

from neonpro.security.pagination import CURSOR_PARAM, DEFAULT_PAGE_SIZE, MAX_CURSOR_LENGTH, MAX_PAGE_SIZE, SIZE_PARAM
from neonpro.security.serializers import StrictSerializer

SESSION, CSRF, BEARER = "sessionCookie", "csrfToken", "bearerToken"


def security_schemes() -> dict[str, dict[str, str]]:
    """The ways to authenticate, by the names operations require them under."""
    return {
        SESSION: {
            "type": "apiKey",
            "in": "cookie",
            "name": settings.SESSION_COOKIE_NAME,
            "description": "People: the session cookie of a sign-in at /accounts/login/.",
        },
        CSRF: {
            "type": "apiKey",
            "in": "header",
            "name": settings.CSRF_HEADER_NAME.removeprefix("HTTP_").replace("_", "-"),
            "description": "With a session, on every unsafe method (POST, PATCH): the CSRF token of the session.",
        },
        BEARER: {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "npa_…",
            "description": "Agents: an API token issued by an administrator (docs/agents.md).",
        },
    }


class ErrorDetailSerializer(serializers.Serializer[Any]):
    code = serializers.CharField(help_text="A stable machine-readable word: not_found, invalid, throttled, ...")
    message = serializers.CharField(help_text="A sentence a person can act on; never repeats a submitted value.")
    # A declared field named like Serializer.fields: DRF's metaclass takes it out of the class.
    fields = serializers.DictField(  # type: ignore[assignment]
        child=serializers.ListField(child=serializers.CharField()),
        help_text="Each invalid input field (dotted when nested) and its messages; empty when none.",
    )


class ErrorSerializer(serializers.Serializer[Any]):
    error = ErrorDetailSerializer()


ERRORS = {
    "400": "Invalid input: `fields` names each bad field (unknown fields included).",
    "401": "Not authenticated: no valid session or token.",
    "403": "Authenticated, but your role or scopes do not allow this (or the CSRF token is missing).",
    "404": "Not found, or not yours to see: the same answer either way.",
    "406": "The Accept header names no type this API serves (application/json).",
    "409": "The resource is not in a state that allows this.",
    "413": "The request body is too large.",
    "415": "The request body is not application/json.",
    "429": "Too many requests: wait Retry-After seconds.",
    "500": "Internal error (logged, without any patient data).",
    "503": "A service this needs is unavailable: retry after Retry-After seconds.",
}


def errors(*codes: int, **descriptions: str) -> dict[int, OpenApiResponse]:
    """Error responses an operation declares beyond the ones derived from its shape (e.g. a
    404 for an id in the body, a 409): ``errors(404, 409, c409="…")``."""
    return {
        code: OpenApiResponse(ErrorSerializer, description=descriptions.get(f"c{code}", ERRORS[str(code)]))
        for code in codes
    }


def page_parameters() -> list[OpenApiParameter]:
    return [
        OpenApiParameter(
            SIZE_PARAM,
            # The paginator reads at most six digits.
            {"type": "integer", "minimum": 1, "maximum": 999_999},
            description=f"Rows per page: {DEFAULT_PAGE_SIZE} unless asked; more than {MAX_PAGE_SIZE} is cut to it.",
        ),
        OpenApiParameter(
            CURSOR_PARAM,
            {"type": "string", "minLength": 1, "maxLength": MAX_CURSOR_LENGTH},
            description="The opaque position of the next page: copy it from the Link header, never build it.",
        ),
    ]


def date_range_parameters(what: str) -> list[OpenApiParameter]:
    return [
        OpenApiParameter("from", OpenApiTypes.DATE, description=f"Only {what} on or after this day (YYYY-MM-DD)."),
        OpenApiParameter("to", OpenApiTypes.DATE, description=f"Only {what} on or before this day (YYYY-MM-DD)."),
    ]


LINK_HEADER = OpenApiParameter(
    "Link",
    OpenApiTypes.STR,
    location=OpenApiParameter.HEADER,
    response=[200],
    description='The next page, as `<https://…?cursor=…>; rel="next"` (RFC 8288); absent on the last page.',
)


def _header(schema: dict[str, Any], description: str, *, required: bool = False) -> dict[str, Any]:
    return {"schema": schema, "description": description, "required": required}


class NeonProAutoSchema(AutoSchema):
    def get_operation(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        operation: dict[str, Any] | None = super().get_operation(*args, **kwargs)
        if operation is None:
            return None
        error = self.resolve_serializer(ErrorSerializer, "response").ref
        responses = operation["responses"]
        for code in sorted(self._error_codes(operation)):
            responses.setdefault(
                code, {"description": ERRORS[code], "content": {"application/json": {"schema": error}}}
            )
        for code, response in responses.items():
            self._add_headers(code, response)
        operation["responses"] = dict(sorted(responses.items()))
        return operation

    def _public(self) -> bool:
        return any(isinstance(p, permissions.AllowAny) for p in self.view.get_permissions())

    def _error_codes(self, operation: dict[str, Any]) -> set[str]:
        where = {parameter["in"] for parameter in operation.get("parameters", [])}
        body = "requestBody" in operation
        codes = {"406", "500", "503"}
        if not self._public():
            codes |= {"401", "403", "429"}
        if body or "query" in where:
            codes.add("400")
        if body:
            codes |= {"413", "415"}
        if "path" in where:
            codes.add("404")
        return codes

    @staticmethod
    def _add_headers(code: str, response: dict[str, Any]) -> None:
        headers = response.setdefault("headers", {})
        headers["Cache-Control"] = _header(
            {"type": "string", "enum": ["no-store"]}, "Never cached: responses may carry PHI.", required=True
        )
        headers["X-Request-ID"] = _header(
            {"type": "string", "format": "uuid"}, "This request's id in the audit log and the server's logs."
        )
        if code in ("429", "503"):
            headers["Retry-After"] = _header({"type": "integer", "minimum": 1}, "Seconds to wait before retrying.")
        if code == "401":
            headers["WWW-Authenticate"] = _header({"type": "string"}, "How to authenticate (token clients: Bearer).")

    def get_auth(self) -> list[dict[str, list[str]]]:
        """A session (with the CSRF header on unsafe methods) or a bearer token; none when public."""
        if self._public():
            return []
        for name, definition in security_schemes().items():
            self.registry.register_on_missing(
                ResolvedComponent(  # type: ignore[no-untyped-call]
                    name=name, type=ResolvedComponent.SECURITY_SCHEMA, object=name, schema=definition
                )
            )
        session: dict[str, list[str]] = {SESSION: []}
        if self.method not in permissions.SAFE_METHODS:
            session[CSRF] = []
        return [session, {BEARER: []}]

    def _postprocess_serializer_schema(self, schema: Any, serializer: Any, direction: Any) -> Any:
        schema = super()._postprocess_serializer_schema(schema, serializer, direction)  # type: ignore[no-untyped-call]
        if direction == "request" and isinstance(serializer, StrictSerializer):
            schema["additionalProperties"] = False
        return schema
