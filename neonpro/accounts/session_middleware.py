"""Right after Django's SessionMiddleware: tell the session store who is asking.

The store (``neonpro.accounts.sessions``) compares the caller's address and user agent with
the ones the session is bound to when it loads, and records them when a session starts or
its user signs in. A session loads before the request's identity is known (the identity is
built from it), so this middleware also binds the audit log's request metadata (address,
user agent, request id) that early: a session ended at load is audited with where the
request came from. ``RequestContextMiddleware`` keeps the same request id.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from neonpro.accounts.sessions import SessionStore, bind_current_session, unbind_current_session
from neonpro.audit.services import bind_request, unbind_request
from neonpro.security.middleware import client_ip


class SessionGuardMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = uuid.uuid4()
        request.request_id = request_id  # type: ignore[attr-defined]
        ip, agent = client_ip(request), request.META.get("HTTP_USER_AGENT", "")
        session = getattr(request, "session", None)
        if not isinstance(session, SessionStore):
            raise TypeError("SessionGuardMiddleware needs SESSION_ENGINE = 'neonpro.accounts.sessions'")
        session.bind_client(ip, agent)
        audit = bind_request(actor_id=None, actor_role="", source_ip=ip, user_agent=agent, request_id=request_id)
        current = bind_current_session(session)
        try:
            return self.get_response(request)
        finally:
            unbind_current_session(current)
            unbind_request(audit)
