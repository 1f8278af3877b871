"""The audit log in the admin: read-only, filterable, never editable; keyset pages, newest first."""

from __future__ import annotations

from django.contrib import admin

from neonpro.audit.models import AuditEvent
from neonpro.security.admin_mixins import ReadOnlyAdminMixin
from neonpro.security.admin_pages import KeysetModelAdmin, recent_values_filter


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdminMixin, KeysetModelAdmin):
    list_display = ("id", "occurred_at", "action", "outcome", "actor_role", "actor_id", "resource_type", "resource_id")
    list_filter = (
        "outcome",
        recent_values_filter("action", "action"),
        recent_values_filter("actor_role", "actor role"),
    )
    search_fields = ("=actor_id", "=resource_id", "=patient_id", "=request_id")
    readonly_fields = [f.name for f in AuditEvent._meta.fields]
    ordering = keyset_order = ("-id",)  # newest first, along the primary key
