"""Account use cases: notifications, the administrators' group, temporary passwords.

Administrators never choose another person's password: they issue a random, one-time
temporary password (after re-entering their own), which the user must replace at the next
sign-in; the user is notified, and the change is in the audit chain with the administrator
as its actor (``neonpro.accounts.signals``).
"""

from __future__ import annotations

import secrets
import uuid
from typing import Any

from django.contrib.auth.models import Group, Permission
from django.core.exceptions import PermissionDenied
from django.db import transaction

from neonpro.accounts.models import Notification, User
from neonpro.accounts.signals import account_change_via

ADMINISTRATORS = "Administrators"
# What a deployment's administrators may do: manage accounts and care teams, run the key
# inventory and the schedule, read the audit log — and nothing that shows PHI.
ADMINISTRATOR_PERMISSIONS = (
    ("accounts", "view_user"),
    ("accounts", "add_user"),
    ("accounts", "change_user"),
    ("accounts", "issue_temporary_password"),
    ("accounts", "view_notification"),
    ("accounts", "view_patientaccount"),
    ("accounts", "change_patientaccount"),
    ("accounts", "view_accountchange"),
    # Agents: see them, disable them, revoke their tokens and certificates (neonpro/accounts/agent_admin.py).
    ("accounts", "view_agentprofile"),
    ("accounts", "change_agentprofile"),
    ("accounts", "view_apitoken"),
    ("accounts", "change_apitoken"),
    ("accounts", "view_agentcertificate"),
    ("accounts", "change_agentcertificate"),
    ("auth", "view_group"),
    ("admin", "view_logentry"),
    ("audit", "view_auditevent"),
    ("keys", "view_datakey"),
    ("keys", "rotate_datakey"),
    ("keys", "view_reencryptionjob"),
    ("keys", "view_subjectkey"),
    ("patients", "view_careteammembership"),
    # Care teams: add a clinician, end a membership (patients/admin.py, through patients.services).
    ("patients", "add_careteammembership"),
    ("patients", "change_careteammembership"),
    ("patients", "view_emergencyaccessgrant"),
    ("django_celery_beat", "view_periodictask"),
    ("django_celery_beat", "change_periodictask"),
    ("django_celery_beat", "view_crontabschedule"),
    ("django_celery_beat", "view_intervalschedule"),
)
PRIVACY_OFFICERS = "Privacy officers"
# Reviewing break-glass uses: the grants (with their written reasons) and the audit log.
PRIVACY_OFFICER_PERMISSIONS = (
    ("patients", "view_emergencyaccessgrant"),
    ("patients", "review_emergencyaccessgrant"),
    ("audit", "view_auditevent"),
    ("accounts", "view_notification"),
)
TEMPORARY_PASSWORD_BYTES = 15  # 20 URL-safe characters


def notify_role(role: str, *, kind: str, details: dict[str, Any]) -> int:
    """Create a notification for every active user with ``role``; return how many."""
    clean = _clean(details)
    recipients = list(User.objects.filter(role=role, is_active=True).values_list("pk", flat=True))
    Notification.objects.bulk_create([Notification(recipient_id=pk, kind=kind, details=clean) for pk in recipients])
    return len(recipients)


def notify_user(user: User, *, kind: str, details: dict[str, Any]) -> Notification:
    return Notification.objects.create(recipient=user, kind=kind, details=_clean(details))


def _clean(details: dict[str, Any]) -> dict[str, Any]:
    return {key: str(value) if isinstance(value, uuid.UUID) else value for key, value in details.items()}


def ensure_administrators_group(*, using: str = "default") -> Group:
    """The ``Administrators`` group with :data:`ADMINISTRATOR_PERMISSIONS` (those that exist yet)."""
    return _ensure_group(ADMINISTRATORS, ADMINISTRATOR_PERMISSIONS, using=using)


def ensure_privacy_officers_group(*, using: str = "default") -> Group:
    """The ``Privacy officers`` group, who review break-glass uses (give it to administrators who do)."""
    return _ensure_group(PRIVACY_OFFICERS, PRIVACY_OFFICER_PERMISSIONS, using=using)


def _ensure_group(name: str, permissions: tuple[tuple[str, str], ...], *, using: str) -> Group:
    group, _ = Group.objects.using(using).get_or_create(name=name)
    wanted = Permission.objects.using(using).none()
    for app_label, codename in permissions:
        wanted |= Permission.objects.using(using).filter(content_type__app_label=app_label, codename=codename)
    missing = wanted.exclude(pk__in=group.permissions.values("pk"))
    if missing.exists():
        group.permissions.add(*missing)
    return group


def issue_temporary_password(actor: User, user: User, *, actor_password: str) -> str:
    """A new random password for ``user``, to be changed at their next sign-in; returns it (show it once).

    Raises PermissionDenied when ``actor`` may not (no permission, an inactive account, their
    own account — which they change with their old password — or a superuser's account when
    they are not one) or when ``actor_password`` is not their current password.
    """
    if not (actor.is_active and actor.has_perm("accounts.issue_temporary_password")):
        raise PermissionDenied("You may not issue temporary passwords.")
    if actor.pk == user.pk:
        raise PermissionDenied("Change your own password with your current one, not a temporary password.")
    if (user.is_superuser or user.is_staff or user.role == User.Role.ADMIN) and not actor.is_superuser:
        raise PermissionDenied("Only a superuser may reset the password of an administrator.")
    if user.role == User.Role.PATIENT:
        raise PermissionDenied(
            "Patient portal passwords are reset by the patient (after proving who they are), never by an "
            "administrator; deactivate the account if it is compromised."
        )
    if user.role == User.Role.AGENT:
        raise PermissionDenied("Agents have no password: they use API tokens or client certificates (docs/agents.md).")
    _throttle_reauthentication(actor)
    if not actor.check_password(actor_password):
        raise PermissionDenied("That is not your password: re-enter your own password to confirm it is you.")
    _reauthenticated(actor)
    password = secrets.token_urlsafe(TEMPORARY_PASSWORD_BYTES)
    with transaction.atomic(), account_change_via("temporary_password"):
        user.set_password(password)  # existing sessions of the user stop working (session hash)
        user.must_change_password = True
        user.save(update_fields=["password", "must_change_password"])
        notify_user(user, kind="password_reset_by_admin", details={"by": actor.pk})
    _email_the_user(user)
    return password


REAUTH_ATTEMPTS = 5
REAUTH_WINDOW = 15 * 60


def _throttle_key(actor: User) -> str:
    return f"neonpro:reauth-failures:{actor.pk}"


def _throttle_reauthentication(actor: User) -> None:
    """At most REAUTH_ATTEMPTS wrong passwords per REAUTH_WINDOW: the form is no password oracle."""
    from django.core.cache import cache

    if int(cache.get(_throttle_key(actor), 0)) >= REAUTH_ATTEMPTS:
        raise PermissionDenied("Too many wrong passwords: try again in 15 minutes.")
    cache.add(_throttle_key(actor), 0, REAUTH_WINDOW)
    cache.incr(_throttle_key(actor))


def _reauthenticated(actor: User) -> None:
    from django.core.cache import cache

    cache.delete(_throttle_key(actor))


def _email_the_user(user: User) -> None:
    """Tell the person themselves, outside the application the administrator controls."""
    from django.core.mail import send_mail

    if not user.email:
        return
    send_mail(
        "Your NeonPro password was reset by an administrator",
        "An administrator issued a temporary password for your NeonPro account, so your old password no "
        "longer works. If you did not ask for this, tell your security team now.",
        None,
        [user.email],
        fail_silently=True,
    )


def complete_password_change(user: User) -> None:
    """After the user chose a new password: no more forced change."""
    if user.must_change_password:
        user.must_change_password = False
        user.save(update_fields=["must_change_password"])
