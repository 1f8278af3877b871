"""The audit log in the admin: read-only, filterable, never editable."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from neonpro.audit.models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("id", "occurred_at", "action", "outcome", "actor_role", "actor_id", "resource_type", "resource_id")
    list_filter = ("outcome", "action", "actor_role")
    search_fields = ("=actor_id", "=resource_id", "=patient_id", "=request_id")
    readonly_fields = [f.name for f in AuditEvent._meta.fields]
    ordering = ("-id",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
