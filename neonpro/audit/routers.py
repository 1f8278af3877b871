"""Audit events travel on their own connection (alias ``audit``) when it is configured.

Each append is then a short transaction of its own: it commits even when the request that
caused it rolls back (a denied or failed access is still recorded), and the chain lock is
held for one insert, not for a whole request. Without the alias (SQLite, the embedded mode)
events share the default connection.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

AUDIT_ALIAS = "audit"


def audit_alias() -> str:
    return AUDIT_ALIAS if AUDIT_ALIAS in settings.DATABASES else "default"


class AuditRouter:
    def db_for_read(self, model: Any, **hints: Any) -> str | None:
        return audit_alias() if model._meta.app_label == "audit" else None

    def db_for_write(self, model: Any, **hints: Any) -> str | None:
        return audit_alias() if model._meta.app_label == "audit" else None

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool | None:
        return None

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool | None:
        # The audit and keys aliases are the default database: migrate it once, there.
        return False if db in (AUDIT_ALIAS, "keys") else None
