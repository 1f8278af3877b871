"""A person's own notices (break-glass uses for administrators, account changes for everyone):
what they say, how many are unread, marking them read. Notices carry ids, never PHI."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from django.utils import timezone

from neonpro.accounts.models import Notification

TEXTS = {
    "password_reset_by_admin": "An administrator issued a temporary password for your account.",
    "break_glass": "A clinician used emergency access (break-glass) to a patient record.",
    "break_glass_many": "A clinician reached the daily threshold of emergency-access uses.",
    "audit_unavailable": "The audit log could not be written: requests that need it are refused (503).",
    "audit_tampering": "The audit chain holds an event the application did not write: run `audit verify`.",
}
PAGE_SIZE = 50


@dataclass(frozen=True)
class Notice:
    id: uuid.UUID
    kind: str
    text: str
    when: Any
    unread: bool
    grant: str | None  # a break-glass grant to review in the admin, by id


def unread_count(user: Any) -> int:
    return Notification.objects.filter(recipient=user, read_at__isnull=True).count()


def notices_for(user: Any, *, unread_only: bool = False, limit: int = PAGE_SIZE) -> list[Notice]:
    """The user's newest notices (at most ``limit``), unread ones marked."""
    rows = Notification.objects.filter(recipient=user)
    if unread_only:
        rows = rows.filter(read_at__isnull=True)
    return [
        Notice(
            id=n.pk,
            kind=n.kind,
            text=TEXTS.get(n.kind, n.kind),
            when=n.created_at,
            unread=n.read_at is None,
            grant=(n.details or {}).get("grant"),
        )
        for n in rows.order_by("-created_at", "-id")[:limit]
    ]


def mark_read(user: Any, ids: list[uuid.UUID] | None = None) -> int:
    """Mark the user's notices read (all unread ones when ``ids`` is None); how many changed."""
    rows = Notification.objects.filter(recipient=user, read_at__isnull=True)
    if ids is not None:
        rows = rows.filter(pk__in=ids)
    return rows.update(read_at=timezone.now())
