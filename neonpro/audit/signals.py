"""Authentication and key events reach the audit log.

Django's auth signals are the only hook these events have, so they are received here. A
failed login records that it happened and a one-way fingerprint of the username tried,
never the username or password.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver

from keys.crypto import blind_index
from keys.signals import key_event
from neonpro.audit.services import record_event


class _Actor:
    def __init__(self, user: Any) -> None:
        self.user_id = getattr(user, "pk", None)
        self.role = getattr(user, "role", "")


@receiver(user_logged_in)
def _logged_in(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    # The second factor that verified the sign-in (django-otp's device), by kind: "none" for a password only.
    device = getattr(user, "otp_device", None)
    details = {"second_factor": device._meta.model_name if device is not None else "none"}
    record_event("auth.login", actor=_Actor(user), resource_type="accounts.user", resource_id=user.pk, details=details)


@receiver(user_logged_out)
def _logged_out(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    if user is not None:
        record_event("auth.logout", actor=_Actor(user), resource_type="accounts.user", resource_id=user.pk)


@receiver(user_login_failed)
def _login_failed(sender: Any, credentials: dict[str, Any], request: Any = None, **kwargs: Any) -> None:
    if credentials.get("neonpro_stage"):
        return  # a second-factor or re-authentication failure: neonpro.accounts.signin_events records it
    username = str(credentials.get("username", "")).strip().casefold()
    record_event(
        "auth.login_failed",
        outcome="denied",
        actor=_Actor(None),
        # Keyed (the blind-index key), so a guessed username cannot be confirmed from the log.
        details={"username_fingerprint": blind_index(username, context=b"neonpro.audit.username").hex()},
    )


@receiver(key_event)
def _key_operation(
    sender: Any, action: str, outcome: str, key_id: int | None, purpose: str, details: dict[str, Any], **kwargs: Any
) -> None:
    from neonpro.audit.services import SYSTEM_ACTOR, current_request

    actor = None if current_request().actor_id else SYSTEM_ACTOR
    extra = {"key_id": key_id, "purpose": purpose or None, **details}
    patient_id = kwargs.get("patient_id")  # a crypto-shredded patient is named on the event
    record_event(
        action, outcome=outcome, resource_type="keys.datakey", actor=actor, details=extra, patient_id=patient_id
    )
