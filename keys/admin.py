"""Read-only key inventory in the Django admin: metadata only, never key material."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.http import HttpRequest
from django.utils import timezone

from keys.models import DataKey

# ModelAdmin is generic only in django-stubs; subscripting it at runtime raises TypeError.
if TYPE_CHECKING:
    _DataKeyAdminBase = admin.ModelAdmin[DataKey]
else:
    _DataKeyAdminBase = admin.ModelAdmin


@admin.register(DataKey)
class DataKeyAdmin(_DataKeyAdminBase):
    list_display = ("id", "purpose", "status", "algorithm", "wrapping_key_id", "provider", "created_at", "age_days")
    list_filter = ("purpose", "status", "provider")
    fields = (
        "id",
        "purpose",
        "status",
        "algorithm",
        "provider",
        "wrapping_key_id",
        "created_at",
        "activated_at",
        "retired_at",
        "destroyed_at",
    )
    readonly_fields = fields

    @admin.display(description="Age (days)")
    def age_days(self, obj: DataKey) -> int:
        return (timezone.now() - obj.created_at).days

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
