"""The sign-in flow: a password, then (where needed) a second factor, and only then a session.

Until the second factor is verified nobody is signed in: the session holds only a pending
marker (user id, backend, when), good for ``NEONPRO_SIGNIN_STEP_SECONDS``, which the code
step and the enrolment step accept and nothing else does — every page and the API see an
anonymous visitor. ``complete_sign_in`` then calls Django's ``login`` (a new session id) with
the verifying device, so django-otp counts the session as verified (the admin requires it).
Wrong codes count toward the lock-out like wrong passwords (``user_login_failed`` with the
stage), and a locked-out account cannot use the code step either.
"""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model, login, user_login_failed

from neonpro.accounts import lockout, mfa
from neonpro.accounts.models import User
from neonpro.accounts.signin_events import REASON, STAGE, USER_ID

PENDING = "neonpro_signin_pending"
REAUTH_AT = "neonpro_reauth_at"
DONE, VERIFY, ENROL = "done", "verify", "enrol"


def begin_sign_in(request: Any, user: User) -> str:
    """After a right password: sign in now (no second factor), or remember the pending user
    and name the next step (``verify`` a code, or ``enrol`` an authenticator first)."""
    if not mfa.needs_second_factor(user):
        complete_sign_in(request, user, device=None)
        return DONE
    request.session.cycle_key()
    request.session[PENDING] = {"user": str(user.pk), "backend": user.backend, "at": int(time.time())}
    return VERIFY if mfa.has_second_factor(user) else ENROL


def pending_user(request: Any) -> User | None:
    """The user between password and second factor (None when there is none or it expired)."""
    pending = request.session.get(PENDING)
    if not isinstance(pending, dict):
        return None
    if time.time() - float(pending.get("at", 0)) > int(settings.NEONPRO_SIGNIN_STEP_SECONDS):
        request.session.pop(PENDING, None)
        return None
    user = get_user_model()._default_manager.filter(pk=pending.get("user"), is_active=True).first()
    if user is not None:
        user.backend = pending.get("backend")
    return user


def complete_sign_in(request: Any, user: User, *, device: Any) -> None:
    """Sign ``user`` in (Django's ``login``: new session id, ``user_logged_in``), verified by
    ``device`` when there is one; a fresh sign-in counts as a re-authentication."""
    request.session.pop(PENDING, None)
    if device is not None:
        user.otp_device = device  # django-otp's user_logged_in receiver stores it in the session
    login(request, user)
    request.session[REAUTH_AT] = int(time.time())


def check_second_factor(request: Any, user: User, token: str, *, stage: str = "mfa") -> mfa.Verification:
    """Verify a code for ``user``; a failure is reported like a failed sign-in (audited,
    counted toward the lock-out). A locked-out account gets ``locked`` without a check
    (audited too; the lock-out answer replaces the page)."""
    if lockout.is_locked(request, user.get_username()):
        lockout.refuse_locked(request, user.get_username())
        verification = mfa.Verification(None, "locked")
    else:
        verification = mfa.verify_second_factor(user, token)
    if verification.device is None:
        user_login_failed.send(
            sender=__name__,
            credentials={"username": user.get_username(), STAGE: stage, REASON: verification.reason, USER_ID: user.pk},
            request=request,
        )
    return verification


FAILURE_MESSAGES = {
    "invalid": "That code is not right. Enter the current code from your authenticator app, or a recovery code.",
    "replayed": "That code was used already. Wait for the next code from your authenticator app.",
    "throttled": "Too many wrong codes: wait a few seconds, then try the next code.",
    "used_recovery_code": "That recovery code was used already: each works once.",
    "no_device": "That code is not right. Enter the current code from your authenticator app, or a recovery code.",
    "locked": lockout.LOCKED_MESSAGE,
}


def failure_message(reason: str) -> str:
    return FAILURE_MESSAGES[reason].format(minutes=lockout.minutes())
