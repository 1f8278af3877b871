"""Every sign-in event reaches the audit chain: success, failure, second-factor failure,
re-authentication failure, lock-out and sign-out.

Django's ``user_logged_in`` / ``user_login_failed`` / ``user_logged_out`` and axes'
``user_locked_out`` are the hooks, so no path (the site's form, the admin, the API's
re-authentication) is missed. Never a password or code; a typed username only as its keyed
hash (``neonpro.accounts.lockout.keyed_username``); the address and request id come from the
request bound for audit (``neonpro.security.middleware``).
"""

from __future__ import annotations

from typing import Any

from axes.signals import user_locked_out
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver

from neonpro.accounts.lockout import keyed_username
from neonpro.accounts.mfa_models import RecoveryCodeSet, TOTPDevice
from neonpro.audit.models import AuditEvent
from neonpro.audit.services import Actor, record_event

RESOURCE = "accounts.user"
# Where a failure happened (credentials["neonpro_stage"]) -> the event it is.
FAILURE_ACTIONS = {
    "password": "signin.failed",
    "mfa": "signin.mfa_failed",
    "reauth": "signin.reauth_failed",
}
STAGE = "neonpro_stage"
REASON = "neonpro_reason"
USER_ID = "neonpro_user_id"


def method_of(user: Any) -> str:
    device = getattr(user, "otp_device", None)
    if isinstance(device, TOTPDevice):
        return "totp"
    if isinstance(device, RecoveryCodeSet):
        return "recovery_code"
    return "password"


@receiver(user_logged_in, dispatch_uid="neonpro-audit-signin-success")
def _signed_in(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    record_event(
        "signin.success",
        actor=Actor(user_id=user.pk, role=user.role),
        resource_type=RESOURCE,
        resource_id=user.pk,
        details={"method": method_of(user)},
    )


@receiver(user_login_failed, dispatch_uid="neonpro-audit-signin-failed")
def _sign_in_failed(sender: Any, credentials: dict[str, Any], request: Any = None, **kwargs: Any) -> None:
    stage = str(credentials.get(STAGE) or "password")
    details: dict[str, Any] = {"reason": str(credentials.get(REASON) or "credentials")}
    username = credentials.get("username")
    if username:
        details["username_hash"] = keyed_username(str(username))
    record_event(
        FAILURE_ACTIONS.get(stage, "signin.failed"),
        outcome=AuditEvent.Outcome.DENIED,
        resource_type=RESOURCE if credentials.get(USER_ID) else "",
        resource_id=credentials.get(USER_ID),
        details=details,
    )


@receiver(user_logged_out, dispatch_uid="neonpro-audit-signin-logout")
def _signed_out(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    if user is None:
        return  # nobody was signed in: nothing ended
    record_event(
        "signin.logout",
        actor=Actor(user_id=user.pk, role=user.role),
        resource_type=RESOURCE,
        resource_id=user.pk,
    )


@receiver(user_locked_out, dispatch_uid="neonpro-audit-signin-locked-out")
def _locked_out(sender: Any, request: Any, username: str | None = None, **kwargs: Any) -> None:
    # ``username`` is already keyed here: axes got it from AXES_USERNAME_CALLABLE.
    details = {"username_hash": username} if username else {"by": "address"}
    record_event("signin.locked_out", outcome=AuditEvent.Outcome.DENIED, details=details)


def install() -> None:
    """At app start: the receivers above are connected (by importing this module), and the
    Django admin becomes one that only second-factor-verified sessions may use."""
    from django.contrib import admin

    from neonpro.accounts.signin_views import OTPRequiredAdminSite

    admin.site.__class__ = OTPRequiredAdminSite
