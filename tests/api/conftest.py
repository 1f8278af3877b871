from __future__ import annotations

from typing import Any


def audit_events(**filters: Any) -> list[Any]:
    from neonpro.audit.models import AuditEvent

    return list(AuditEvent.objects.filter(**filters).order_by("id"))
