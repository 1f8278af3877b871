"""How agents authenticate to the API (``/api/`` only), and the audit of every agent request.

Guarantees:

* ``AgentAuthenticationMiddleware`` runs before ``RequestContextMiddleware`` (which builds
  the request's database identity from ``request.user``), so an agent's requests carry its
  identity and scopes from the start. On ``/api/`` it reads, in this order:

  - ``Authorization: Bearer npa_...``: an API token (``agent_tokens.check_token``);
  - otherwise the client certificate the TLS terminator verified, from ``X-SSL-Client-Cert``
    (URL-escaped PEM, nginx's ``$ssl_client_escaped_cert``) with ``X-SSL-Client-Verify:
    SUCCESS`` (``$ssl_client_verify``) — honoured **only** when the connection comes from an
    address in ``NEONPRO_TRUSTED_PROXIES`` (default: none), or over the app's unix socket if
    the list says ``unix``; ignored from anyone else (``agent_certificates.check_certificate``).

  A credential that does not authenticate leaves the request anonymous (a session cookie
  beside it does not count) and the API answers 401 with ``WWW-Authenticate: Bearer
  realm="neonpro"`` (``AgentAuthentication``). Agents have no session and no CSRF token.
* ``AgentRequestAuditMiddleware`` (after ``RequestContextMiddleware``) records one
  ``agent.request`` event per request that presented an agent credential: the agent (the
  bound actor), how it authenticated (token prefix or certificate fingerprint, never the
  token), the scope that admitted the request, the method, the route name, the status, and
  the reason a credential was refused.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest, HttpResponse
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

from neonpro.accounts import agent_certificates, agent_tokens
from neonpro.audit.services import AuditUnavailableError, record_event
from neonpro.security.context import AGENT_SCOPES
from neonpro.security.errors import audit_unavailable, is_api
from neonpro.security.middleware import client_ip

REALM = 'Bearer realm="neonpro"'
CERT_HEADER = "HTTP_X_SSL_CLIENT_CERT"  # docker/nginx.conf sets both, from its own handshake
VERIFY_HEADER = "HTTP_X_SSL_CLIENT_VERIFY"
UNIX_SOCKET = "unix"
REFUSED = "The credential presented does not authenticate (unknown, expired or revoked)."


@dataclass
class AgentCredential:
    """What an API request presented: ``kind`` (token or certificate), its public reference
    (token prefix, certificate fingerprint), and the agent (None when it was refused)."""

    kind: str
    reference: str | None = None
    user: Any = None
    refused: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def audit_details(self) -> dict[str, Any]:
        details: dict[str, Any] = {"auth": self.kind}
        details["token_prefix" if self.kind == "token" else "fingerprint"] = self.reference
        if self.refused:
            details["reason"] = self.refused
        return details


def trusted_proxy(request: HttpRequest) -> bool:
    """Whether the connection comes from an address in ``NEONPRO_TRUSTED_PROXIES`` (addresses or
    networks), or — if it lists ``unix`` — over the server's unix socket, which only the
    terminator can reach (docker/: uvicorn ``--uds``, where ``--proxy-headers`` makes
    REMOTE_ADDR the forwarded client's address, so no address would do)."""
    trusted = list(getattr(settings, "NEONPRO_TRUSTED_PROXIES", []))
    server = getattr(request, "scope", {}).get("server")  # ASGI: (path, None) on a unix socket
    if UNIX_SOCKET in trusted and server is not None and server[1] is None:
        return True
    try:
        peer = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(peer in ipaddress.ip_network(entry, strict=False) for entry in trusted if entry != UNIX_SOCKET)


def _from_token(request: HttpRequest, header: str) -> AgentCredential:
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return AgentCredential("token", refused="scheme")
    try:
        checked = agent_tokens.check_token(value.strip())
    except agent_tokens.TokenRefused as refused:
        return AgentCredential("token", refused.prefix, refused=refused.reason)
    agent_tokens.touch_token(checked.token, ip=client_ip(request))
    user = checked.token.agent
    setattr(user, AGENT_SCOPES, checked.scopes)
    return AgentCredential("token", checked.token.prefix, user)


def _from_certificate(request: HttpRequest) -> AgentCredential | None:
    pem = request.META.get(CERT_HEADER, "")
    if not pem or not trusted_proxy(request):
        return None
    if request.META.get(VERIFY_HEADER, "") != "SUCCESS":
        return AgentCredential("certificate", refused="not_verified")
    try:
        checked = agent_certificates.check_certificate(unquote(pem).encode())
    except agent_certificates.CertificateRefused as refused:
        return AgentCredential("certificate", refused.fingerprint, refused=refused.reason)
    user = checked.certificate.agent
    setattr(user, AGENT_SCOPES, checked.scopes)
    return AgentCredential("certificate", checked.certificate.fingerprint, user)


def credential_of(request: HttpRequest) -> AgentCredential | None:
    """The agent credential an API request presents (checked), or None when it presents none."""
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if header:
        return _from_token(request, header)
    return _from_certificate(request)


class AgentAuthenticationMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if is_api(request):
            credential = credential_of(request)
            if credential is not None:
                request.agent_credential = credential  # type: ignore[attr-defined]
                request.user = credential.user or AnonymousUser()
        return self.get_response(request)


class AgentAuthentication(BaseAuthentication):
    """DRF's view of the middleware's work; first in the list, so every unauthenticated API
    request is a 401 with ``WWW-Authenticate`` (DRF asks the first class for the header)."""

    def authenticate(self, request: Request) -> tuple[Any, AgentCredential] | None:
        credential: AgentCredential | None = getattr(request._request, "agent_credential", None)
        if credential is None:
            return None
        if credential.refused:
            raise AuthenticationFailed(REFUSED)
        return credential.user, credential

    def authenticate_header(self, request: Request) -> str:
        return REALM


class AgentRequestAuditMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        credential: AgentCredential | None = getattr(request, "agent_credential", None)
        if credential is None:
            return response
        status = response.status_code
        match = request.resolver_match
        details = {
            **credential.audit_details(),
            "scope": getattr(request, "api_scope", None),
            "method": request.method,
            "route": match.url_name if match is not None else None,
            "status": status,
        }
        outcome = "success" if status < 400 else "error" if status >= 500 else "denied"
        try:
            record_event("agent.request", outcome=outcome, details=details)
        except AuditUnavailableError:
            return audit_unavailable(request)  # a 503: RequestContextMiddleware rolls the request back
        return response
