"""Every change to an account reaches the hash-chained audit log, whatever made it.

The Django admin, ``manage.py shell``, ``createsuperuser``, ``changepassword`` and the
project's own services all change users through the ORM, so the ORM's signals are the one
hook that sees every path: a security review found an administrator could set a clinician's
password and sign in as them, leaving only a trace in ``django_admin_log``. Recorded, with the
actor bound to the request or the operator command (``neonpro.audit``) and the target as the
resource: creation, deletion, password set or reset (and how: ``account_change_via``), role,
active flag, staff and superuser flags, other profile fields (names only, never values), and
group and permission membership (ids). Never a password, hash or name.

The same changes end sessions server-side (``neonpro.accounts.sessions``): a new password
ends every other session of the user, deactivation ends them all (both through
``credentials_changed``), and new rights end the others and rotate the user's own.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.contrib.auth.models import Group
from django.contrib.auth.signals import user_logged_in
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_save
from django.dispatch import Signal, receiver

from neonpro.accounts import sessions
from neonpro.accounts.models import User
from neonpro.audit.services import record_event

RESOURCE = "accounts.user"
TRACKED = (
    "password",
    "role",
    "is_active",
    "is_staff",
    "is_superuser",
    "username",
    "email",
    "first_name",
    "last_name",
    "must_change_password",
)
PROFILE = ("username", "email", "first_name", "last_name", "must_change_password")
_BEFORE = "_audit_before"
_via: contextvars.ContextVar[str] = contextvars.ContextVar("neonpro_account_change_via", default="")

# Sent when what proves who a user is changes: password set, MFA device added, replaced or
# removed, recovery codes regenerated, account deactivated. Arguments: ``user`` (the User),
# ``reason`` (a short code such as "password_change", "mfa_change", "deactivated") and
# ``keep_session_key`` (the session that made the change, kept alive; None ends them all).
# The session store (neonpro.accounts.sessions) ends the user's sessions server-side on it.
credentials_changed = Signal()


@contextmanager
def account_change_via(how: str) -> Iterator[None]:
    """Name how the account changes inside the block are made (e.g. ``temporary_password``)."""
    token = _via.set(how)
    try:
        yield
    finally:
        _via.reset(token)


def _how() -> dict[str, str]:
    how = _via.get()
    return {"via": how} if how else {}


@receiver(pre_save, sender=User)
def _remember_account(sender: Any, instance: User, raw: bool = False, update_fields: Any = None, **kwargs: Any) -> None:
    instance.__dict__.pop(_BEFORE, None)
    if raw or instance._state.adding:
        return
    fields = TRACKED if update_fields is None else tuple(f for f in TRACKED if f in update_fields)
    if not fields:
        return  # e.g. last_login at sign-in: nothing tracked changes
    instance.__dict__[_BEFORE] = User._base_manager.filter(pk=instance.pk).values(*fields).first() or {}


@receiver(post_save, sender=User)
def _audit_account(sender: Any, instance: User, created: bool, raw: bool = False, **kwargs: Any) -> None:
    if raw:
        return
    before: dict[str, Any] | None = instance.__dict__.pop(_BEFORE, None)
    target: dict[str, Any] = {"resource_type": RESOURCE, "resource_id": instance.pk}
    if created:
        record_event(
            "account.create",
            **target,
            details={"role": instance.role, "staff": instance.is_staff, "superuser": instance.is_superuser, **_how()},
        )
        return
    if not before:
        return
    changed = {name for name, old in before.items() if old != getattr(instance, name)}
    if "password" in changed:
        record_event("account.password_set", **target, details={"usable": instance.has_usable_password(), **_how()})
    if "role" in changed:
        record_event("account.role_change", **target, details={"from": before["role"], "to": instance.role})
    if "is_active" in changed:
        record_event("account.activate" if instance.is_active else "account.deactivate", **target)
    if changed & {"is_staff", "is_superuser"}:
        record_event(
            "account.privilege_change",
            **target,
            details={"staff": instance.is_staff, "superuser": instance.is_superuser},
        )
    profile = sorted(changed & set(PROFILE))
    if profile:
        record_event("account.update", **target, details={"fields": profile})
    _end_sessions_for(instance, changed)


@receiver(post_delete, sender=User)
def _audit_deleted_account(sender: Any, instance: User, **kwargs: Any) -> None:
    record_event("account.delete", resource_type=RESOURCE, resource_id=instance.pk)


def _membership(kind: str) -> Any:
    def receive(sender: Any, instance: Any, action: str, reverse: bool, pk_set: Any, **kwargs: Any) -> None:
        if action not in ("post_add", "post_remove", "pre_clear"):
            return
        if action == "pre_clear":  # post_clear no longer knows what was removed
            members = instance.user_set if reverse else getattr(instance, kind)
            pk_set = set(members.values_list("pk", flat=True))
        change = {"post_add": "add", "post_remove": "remove", "pre_clear": "clear"}[action]
        if reverse:  # instance is the group (or permission), pk_set the users
            for user_id in sorted(pk_set or (), key=str):
                record_event(
                    f"account.{kind}_change",
                    resource_type=RESOURCE,
                    resource_id=user_id,
                    details={"change": change, kind: [instance.pk]},
                )
            for user in User._base_manager.filter(pk__in=pk_set or ()):
                sessions.end_sessions_after_privilege_change(user)
            return
        record_event(
            f"account.{kind}_change",
            resource_type=RESOURCE,
            resource_id=instance.pk,
            details={"change": change, kind: sorted(pk_set or ())},
        )
        sessions.end_sessions_after_privilege_change(instance)

    return receive


_groups_changed = _membership("groups")
_permissions_changed = _membership("user_permissions")
m2m_changed.connect(_groups_changed, sender=User.groups.through, dispatch_uid="neonpro-audit-user-groups")
m2m_changed.connect(
    _permissions_changed, sender=User.user_permissions.through, dispatch_uid="neonpro-audit-user-permissions"
)


@receiver(m2m_changed, sender=Group.permissions.through)
def _audit_group_permissions(
    sender: Any, instance: Any, action: str, reverse: bool, pk_set: Any, **kwargs: Any
) -> None:
    """A group's permissions change every member's rights."""
    if action not in ("post_add", "post_remove", "pre_clear") or reverse:
        return
    if action == "pre_clear":
        pk_set = set(instance.permissions.values_list("pk", flat=True))
    record_event(
        "account.group_permissions_change",
        resource_type="auth.group",
        details={"group": instance.pk, "change": action.split("_")[-1], "permissions": sorted(pk_set or ())},
    )


# -- Sessions end server-side when what they were started with changes ---------------------
def _end_sessions_for(user: User, changed: set[str]) -> None:
    """A new password keeps only the session that set it (if it is the user's own);
    deactivation ends them all; new rights end the others and rotate the user's own."""
    if "password" in changed:
        credentials_changed.send(
            sender=User, user=user, reason="password_change", keep_session_key=sessions.own_session_key(user)
        )
    if "is_active" in changed and not user.is_active:
        credentials_changed.send(sender=User, user=user, reason="deactivated", keep_session_key=None)
    if changed & {"role", "is_staff", "is_superuser"}:
        sessions.end_sessions_after_privilege_change(user)


@receiver(credentials_changed, dispatch_uid="neonpro-sessions-credentials-changed")
def _end_sessions_on_new_credentials(
    sender: Any, user: User, reason: str, keep_session_key: str | None = None, **kwargs: Any
) -> None:
    sessions.end_sessions(user, reason=reason, keep_session_key=keep_session_key)


@receiver(user_logged_in, dispatch_uid="neonpro-sessions-limit")
def _limit_sessions_at_sign_in(sender: Any, request: Any, user: User, **kwargs: Any) -> None:
    sessions.limit_sessions(user, keep_session_key=request.session.session_key)
