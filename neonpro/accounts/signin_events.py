"""The sign-in events beyond Django's own: second-factor and re-authentication failures, and lock-outs.

``neonpro.audit.signals`` records Django's ``user_logged_in`` (``auth.login``, with the kind of
second factor), ``user_login_failed`` for a wrong password (``auth.login_failed``) and
``user_logged_out`` (``auth.logout``). A failure at a later stage is sent as
``user_login_failed`` too (so it counts toward the lock-out), with ``neonpro_stage``, and is
recorded here: ``signin.mfa_failed`` / ``signin.reauth_failed`` with the reason; axes'
``user_locked_out`` becomes ``signin.locked_out``. Never a password or code; a typed username
only as its keyed hash (``neonpro.accounts.lockout.keyed_username``); the address and request
id come from the request bound for audit (``neonpro.security.middleware``).
"""

from __future__ import annotations

from typing import Any

from axes.signals import user_locked_out
from django.contrib.auth.signals import user_login_failed
from django.dispatch import receiver

from neonpro.accounts.lockout import keyed_username
from neonpro.audit.models import AuditEvent
from neonpro.audit.services import record_event

RESOURCE = "accounts.user"
# Where a failure happened (credentials["neonpro_stage"]) -> the event it is.
FAILURE_ACTIONS = {
    "mfa": "signin.mfa_failed",
    "reauth": "signin.reauth_failed",
}
STAGE = "neonpro_stage"
REASON = "neonpro_reason"
USER_ID = "neonpro_user_id"


@receiver(user_login_failed, dispatch_uid="neonpro-audit-signin-failed")
def _sign_in_failed(sender: Any, credentials: dict[str, Any], request: Any = None, **kwargs: Any) -> None:
    stage = credentials.get(STAGE)
    if not stage:
        return  # a wrong password: neonpro.audit.signals records auth.login_failed
    details = {
        "reason": str(credentials.get(REASON) or "credentials"),
        "username_hash": keyed_username(str(credentials["username"])),
    }
    record_event(
        FAILURE_ACTIONS[stage],
        outcome=AuditEvent.Outcome.DENIED,
        resource_type=RESOURCE,
        resource_id=credentials[USER_ID],
        details=details,
    )


@receiver(user_locked_out, dispatch_uid="neonpro-audit-signin-locked-out")
def _locked_out(sender: Any, request: Any, username: str | None = None, **kwargs: Any) -> None:
    # ``username`` is already keyed here: axes got it from AXES_USERNAME_CALLABLE.
    details = {"username_hash": username} if username else {"by": "address"}
    record_event("signin.locked_out", outcome=AuditEvent.Outcome.DENIED, details=details)


def install() -> None:
    """At app start: the receivers above are connected (by importing this module), and the
    Django admin becomes NeonPro's (neonpro.security.admin_site), which only
    second-factor-verified sessions may use."""
    from django.contrib import admin

    from neonpro.security.admin_site import NeonProAdminSite

    admin.site.__class__ = NeonProAdminSite
