"""Alerts: the audit log cannot be written, or its last row is not one the application wrote.

Each goes to the log at CRITICAL (which action, why, which event id: never a value from an
event) and, at most once per :data:`ALERT_INTERVAL` per kind (per event, for tampering), to
every active administrator as a ``Notification``. The notification is written on the audit
connection, so a request that fails and rolls back does not take it along. Alerting never
raises: if even the notification cannot be written, the log line says so, and the caller's
own error (a 503) is what the user sees.
"""

from __future__ import annotations

import logging

from django.core.cache import cache
from django.db import transaction

from neonpro.audit.routers import audit_alias

logger = logging.getLogger("neonpro.audit")
ALERT_INTERVAL = 15 * 60  # seconds between two notifications of the same kind
CACHE_PREFIX = "neonpro:audit-alert:"
UNAVAILABLE = "audit_unavailable"
TAMPERING = "audit_tampering"


def audit_unavailable(action: str, reason: str) -> None:
    logger.critical("audit log unavailable: %s could not be recorded (%s); the operation was refused", action, reason)
    _notify(UNAVAILABLE, {}, key=UNAVAILABLE)


def tampering(event_id: int, head: bytes) -> None:
    logger.critical(
        "audit chain: event %s was not written by the application (forged or edited); "
        "later events are chained after it; run `manage.py audit verify`",
        event_id,
    )
    _notify(TAMPERING, {"event": event_id}, key=f"{TAMPERING}:{event_id}:{head[:8].hex()}")


def _notify(kind: str, details: dict[str, int], *, key: str) -> None:
    from neonpro.accounts.models import Notification, User

    try:
        if not cache.add(CACHE_PREFIX + key, 1, ALERT_INTERVAL):
            return
        alias = audit_alias()
        with transaction.atomic(using=alias):
            admins = User.objects.using(alias).filter(role=User.Role.ADMIN, is_active=True).values_list("pk", flat=True)
            Notification.objects.using(alias).bulk_create(
                [Notification(recipient_id=pk, kind=kind, details=details) for pk in admins]
            )
    except Exception as exc:  # an alert must never turn a clear refusal into a crash
        logger.error("could not notify administrators of %s (%s)", kind, type(exc).__name__)
