"""Account use cases."""

from __future__ import annotations

import uuid
from typing import Any

from neonpro.accounts.models import Notification, User


def notify_role(role: str, *, kind: str, details: dict[str, Any]) -> int:
    """Create a notification for every active user with ``role``; return how many."""
    clean = {key: str(value) if isinstance(value, uuid.UUID) else value for key, value in details.items()}
    recipients = list(User.objects.filter(role=role, is_active=True).values_list("pk", flat=True))
    Notification.objects.bulk_create([Notification(recipient_id=pk, kind=kind, details=clean) for pk in recipients])
    return len(recipients)
