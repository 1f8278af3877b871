"""No session counts as signed in for someone who needs a second factor until it is verified.

The sign-in flow never makes such a session (``neonpro.accounts.signin``), but a session can
still get here another way: a role changed to clinician while signed in, a device enrolled
from another session, a session made by a tool. Such a session is ended, and the person is
taken to the second-factor step (or enrolment) they owe, with the same pending marker the
password step leaves; the API answers 403 ``mfa_required``. Runs after django-otp's
``OTPMiddleware`` (itself after ``AgentAuthenticationMiddleware``) and before anything that
acts on the identity; a request an agent credential authenticated has no session, so no
second factor to owe.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, logout
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse

from neonpro.accounts import mfa
from neonpro.accounts.signin import PENDING
from neonpro.security.error_body import error_response
from neonpro.security.errors import is_api

MESSAGE = "Sign in with your second factor first (/accounts/login/): this session was not verified with one."


class SecondFactorRequiredMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        if (
            user is not None
            and user.is_authenticated
            and getattr(request, "agent_credential", None) is None  # agents have no session to verify
            and not user.is_verified()
            and not request.path.startswith("/" + settings.STATIC_URL.lstrip("/"))
            and mfa.needs_second_factor(user)
        ):
            if is_api(request):
                return error_response("mfa_required", MESSAGE, 403)
            backend = request.session.get(BACKEND_SESSION_KEY)
            logout(request)
            request.session[PENDING] = {"user": str(user.pk), "backend": backend, "at": int(time.time())}
            step = "signin_verify" if mfa.has_second_factor(user) else "signin_enrol"
            return HttpResponseRedirect(f"{reverse(step)}?{urlencode({'next': request.path})}")
        return self.get_response(request)
