"""Request-wide security: response headers, request ids, and the database identity.

``RequestContextMiddleware`` runs each request in one transaction that starts by setting the
caller's identity (``acting_as``), binds who/where/which-request for the audit log, rolls
the transaction back on a server error, and tags the response with ``X-Request-ID``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

from django.conf import settings
from django.db import DatabaseError, transaction
from django.http import HttpRequest, HttpResponse

from neonpro.audit.services import AuditUnavailableError, bind_request, record_event, unbind_request
from neonpro.security.context import acting_as, identity_for_user
from neonpro.security.errors import audit_unavailable

logger = logging.getLogger(__name__)


class SecurityHeadersMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        policy = getattr(settings, "CONTENT_SECURITY_POLICY", "")
        if policy and "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = policy
        if not request.path.startswith("/" + settings.STATIC_URL.lstrip("/")):
            # Pages may carry PHI: never cache them in browsers or shared proxies.
            response["Cache-Control"] = "no-store"
        return response


def client_ip(request: HttpRequest) -> str | None:
    """REMOTE_ADDR, or the address nginx reports when we sit behind it (trusted hop only)."""
    if getattr(settings, "SECURE_PROXY_SSL_HEADER", None) and request.META.get("HTTP_X_REAL_IP"):
        return str(request.META["HTTP_X_REAL_IP"])
    return request.META.get("REMOTE_ADDR") or None


class RequestContextMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        # The session guard (neonpro.accounts.session_middleware) may have named the request already.
        request_id = getattr(request, "request_id", None) or uuid.uuid4()
        request.request_id = request_id  # type: ignore[attr-defined]
        identity = identity_for_user(getattr(request, "user", None))
        token = bind_request(
            actor_id=identity.user_id,
            actor_role=identity.role,
            source_ip=client_ip(request),
            user_agent=request.META.get("HTTP_USER_AGENT", ""),
            request_id=request_id,
        )
        try:
            with acting_as(identity):
                response = self.get_response(request)
                if response.status_code >= 500:
                    transaction.set_rollback(True)
            if response.status_code >= 500:
                try:
                    record_event("request.error", outcome="error", details={"status": response.status_code})
                except AuditUnavailableError:
                    pass  # already alerted; the response (a 503 if this is why) says so
                except DatabaseError:  # the error is the database being gone: the 503 stands
                    logger.error("request.error not audited: the audit database is unavailable")
        finally:
            unbind_request(token)
        response["X-Request-ID"] = str(request_id)
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        """No audit, no service: an append that failed is a clear 503, not a 500."""
        return audit_unavailable(request) if isinstance(exception, AuditUnavailableError) else None
