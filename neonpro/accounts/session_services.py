"""Sessions as people manage them: a user lists and ends their own, an administrator ends a user's.

Every end is audited (``session.end``: ``reason`` ``user`` or ``admin``, the actor being the
person who ended it); a session that is not the caller's own, or no longer live, is reported
as missing, never as someone else's.
"""

from __future__ import annotations

import uuid

from django.core.exceptions import PermissionDenied
from django.utils import timezone

from neonpro.accounts.models import User
from neonpro.accounts.session_models import UserSession, UserSessionQuerySet
from neonpro.accounts.sessions import end_session, end_sessions, session_settings


def live_sessions_of(user: User) -> UserSessionQuerySet:
    """``user``'s sessions that still work, the most recently used first."""
    rows = UserSession.objects.live(**session_settings.limits(timezone.now())).filter(user_id=user.pk)
    return rows.order_by("-last_seen_at", "-pk")


def end_own_session(user: User, session_id: uuid.UUID) -> None:
    """End one of ``user``'s live sessions (not the current one: that is signing out).

    Raises UserSession.DoesNotExist when ``user`` has no live session ``session_id``.
    """
    end_session(live_sessions_of(user).get(pk=session_id), reason="user")


def end_other_sessions(user: User, *, current_session_key: str | None) -> int:
    """End every live session of ``user`` but the current one; return how many ended."""
    return end_sessions(user, reason="user", keep_session_key=current_session_key)


def end_all_sessions(actor: User, user: User) -> int:
    """An administrator ends every session of ``user`` (who signs in again); returns how many.

    Raises PermissionDenied when ``actor`` may not change ``user``'s account (no permission,
    an inactive account, or a superuser's account when ``actor`` is not one).
    """
    permission = "accounts.change_patientaccount" if user.role == User.Role.PATIENT else "accounts.change_user"
    if not (actor.is_active and actor.has_perm(permission)):
        raise PermissionDenied("You may not end this account's sessions.")
    if user.is_superuser and not actor.is_superuser:
        raise PermissionDenied("Only a superuser may end a superuser's sessions.")
    return end_sessions(user, reason="admin")
