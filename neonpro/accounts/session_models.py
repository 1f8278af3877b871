"""Sessions as the database keeps them: a keyed hash of the token, never the token.

One row per browser session (anonymous ones too: a sign-in in steps keeps its state in the
session before anyone is signed in). ``token_digest`` is the session token's blind index
(``keys.crypto``, purpose ``index``), so a copy of the table names no cookie that works;
``data`` is the session's content encrypted under the ``session`` data key, bound to the
row, its user, its start and its digest. Ended sessions are deleted, not kept: the audit
log (``session.*`` events) is their history. The store is ``neonpro.accounts.sessions``.
"""

from __future__ import annotations

import datetime as dt
import uuid

from django.conf import settings
from django.db import models

USER_AGENT_LENGTH = 256


class UserSessionQuerySet(models.QuerySet["UserSession"]):
    def live(self, *, now: dt.datetime, idle: dt.timedelta, lifetime: dt.timedelta) -> UserSessionQuerySet:
        """Sessions past neither limit, with the limits as configured now (a lowered one
        applies to sessions that started before it was)."""
        return self.filter(idle_expires_at__gt=now, last_seen_at__gt=now - idle, created_at__gt=now - lifetime)

    def expired(self, *, now: dt.datetime, idle: dt.timedelta, lifetime: dt.timedelta) -> UserSessionQuerySet:
        return self.filter(
            models.Q(idle_expires_at__lte=now)
            | models.Q(last_seen_at__lte=now - idle)
            | models.Q(created_at__lte=now - lifetime)
        )


class UserSession(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    token_digest = models.BinaryField(max_length=20, unique=True, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="sessions"
    )
    data = models.BinaryField(editable=False, help_text="The session's content, encrypted (keys purpose session).")
    created_at = models.DateTimeField(help_text="When the session started, or its user signed in.")
    last_seen_at = models.DateTimeField(help_text="Last request (written at most once a minute).")
    expires_at = models.DateTimeField(help_text="Absolute end: created_at plus the configured lifetime.")
    idle_expires_at = models.DateTimeField(
        help_text="Idle end: last_seen_at plus the idle timeout, never past expires_at."
    )
    ip_address = models.GenericIPAddressField(null=True, blank=True, help_text="Where it started or signed in.")
    user_agent = models.CharField(max_length=USER_AGENT_LENGTH, blank=True)

    objects = UserSessionQuerySet.as_manager()

    class Meta:
        indexes = [
            models.Index(fields=["user", "idle_expires_at"], name="usersession_user_live"),
            models.Index(fields=["idle_expires_at"], name="usersession_idle_expiry"),
        ]

    def __str__(self) -> str:
        return f"Session {self.pk}"

    def limit_reached(self, *, now: dt.datetime, idle: dt.timedelta, lifetime: dt.timedelta) -> str | None:
        """``"absolute"`` or ``"idle"`` when the session is past that limit at ``now``, else None."""
        if now >= min(self.expires_at, self.created_at + lifetime):
            return "absolute"
        if now >= min(self.idle_expires_at, self.last_seen_at + idle):
            return "idle"
        return None
