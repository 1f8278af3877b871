"""Re-authentication before sensitive operations (ASVS 3.7.1): password and second factor again.

A success stamps the session (``REAUTH_AT``) and is good for ``NEONPRO_REAUTH_SECONDS``
(default 300); a sign-in with both factors stamps it too. Break-glass, the key admin actions
and changing one's second factor check it: pages send the person to ``/accounts/reauth/``
and back, the API refuses with 403 ``reauth_required`` (``POST /api/v1/reauth/`` re-authenticates
a session). The password check goes through ``authenticate`` — the lock-out applies — and
every attempt is audited (``signin.reauth`` / ``signin.reauth_failed``).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import authenticate
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from rest_framework import status
from rest_framework.exceptions import APIException

from neonpro.accounts import mfa
from neonpro.accounts.signin import REAUTH_AT, check_second_factor, failure_message
from neonpro.accounts.signin_events import REASON, STAGE, USER_ID
from neonpro.audit.services import record_event

RESOURCE = "accounts.user"
REFUSED_MESSAGE = "That password is not right."


class ReauthRequired(APIException):
    status_code = status.HTTP_403_FORBIDDEN
    default_code = "reauth_required"
    default_detail = (
        "Confirm who you are first: POST /api/v1/reauth/ with your password and a current code "
        "(or use /accounts/reauth/), then repeat this request."
    )


def reauthenticated_recently(request: HttpRequest) -> bool:
    at = request.session.get(REAUTH_AT)
    return isinstance(at, int) and 0 <= time.time() - at <= int(settings.NEONPRO_REAUTH_SECONDS)


def reauthenticate(request: HttpRequest, *, password: str, otp: str) -> str | None:
    """Check the signed-in user's password and second factor; None on success (the session is
    stamped and gets a new id), else a message saying what was wrong."""
    user: Any = request.user
    checked = authenticate(
        request,
        username=user.get_username(),
        password=password,
        **{STAGE: "reauth", REASON: "password", USER_ID: user.pk},
    )
    if getattr(request, "axes_locked_out", False):
        return failure_message("locked")
    if checked is None or checked.pk != user.pk:
        return REFUSED_MESSAGE
    if mfa.needs_second_factor(user):
        verification = check_second_factor(request, user, otp, stage="reauth")
        if verification.device is None:
            return failure_message(verification.reason)
    request.session.cycle_key()  # an elevation: a new session id
    request.session[REAUTH_AT] = int(time.time())
    record_event("signin.reauth", resource_type=RESOURCE, resource_id=user.pk)
    return None


def reauth_url(next_url: str) -> str:
    return f"{reverse('reauth')}?{urlencode({'next': next_url})}"


def require_recent_reauth(request: HttpRequest) -> None:
    """For API views: raise the 403 ``reauth_required`` unless re-authenticated recently."""
    if not reauthenticated_recently(request):
        raise ReauthRequired


def reauth_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """For page views: send the person to re-authenticate first, then back here."""

    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not reauthenticated_recently(request):
            return HttpResponseRedirect(reauth_url(request.get_full_path()))
        return view(request, *args, **kwargs)

    return wrapped


def reauth_required_action(action: Callable[..., Any]) -> Callable[..., Any]:
    """For admin actions: without a recent re-authentication the action does nothing and
    the administrator is sent to re-authenticate, then back to the list to run it again."""

    @functools.wraps(action)
    def wrapped(modeladmin: Any, request: HttpRequest, queryset: Any) -> Any:
        if not reauthenticated_recently(request):
            modeladmin.message_user(
                request,
                "Confirm who you are (password and code), then run the action again.",
                level=messages.WARNING,
            )
            return HttpResponseRedirect(reauth_url(request.get_full_path()))
        return action(modeladmin, request, queryset)

    return wrapped
