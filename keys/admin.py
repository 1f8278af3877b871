"""Key inventory in the Django admin: metadata only, never key material.

Superusers can rotate, start re-encryption and retire from here; each action goes through
the same services as the command line, and so is audited, and each needs a recent
re-authentication (the guard NEONPRO_KEYS_ADMIN_ACTION_GUARD names: keys imports nothing of the app's).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from keys.exceptions import KeysError
from keys.models import DataKey, ReencryptionJob, SubjectKey

if TYPE_CHECKING:
    _DataKeyAdminBase = admin.ModelAdmin[DataKey]
    _JobAdminBase = admin.ModelAdmin[ReencryptionJob]
    _SubjectAdminBase = admin.ModelAdmin[SubjectKey]
else:
    _DataKeyAdminBase = _JobAdminBase = _SubjectAdminBase = admin.ModelAdmin


def _guarded(action: Any) -> Any:
    """Runs the action through the deployment's guard (a decorator named by
    NEONPRO_KEYS_ADMIN_ACTION_GUARD, e.g. a recent re-authentication), resolved at call time."""

    @functools.wraps(action)
    def run(modeladmin: Any, request: HttpRequest, queryset: Any) -> Any:
        from django.conf import settings
        from django.utils.module_loading import import_string

        guard = getattr(settings, "NEONPRO_KEYS_ADMIN_ACTION_GUARD", "")
        return (import_string(guard)(action) if guard else action)(modeladmin, request, queryset)

    return run


class _ReadOnly:
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(DataKey)
class DataKeyAdmin(_ReadOnly, _DataKeyAdminBase):
    list_display = (
        "id",
        "purpose",
        "status",
        "algorithm",
        "age_days",
        "encryption_count",
        "wrapping_key_id",
        "provider",
        "created_at",
    )
    list_filter = ("purpose", "status", "provider")
    fields = (
        "id",
        "purpose",
        "status",
        "algorithm",
        "provider",
        "wrapping_key_id",
        "encryption_count",
        "values_using_it",
        "created_at",
        "activated_at",
        "deactivated_at",
        "retired_at",
        "destroyed_at",
    )
    readonly_fields = fields
    actions = ["rotate_purpose", "start_reencryption", "retire_keys"]

    @admin.display(description="Age (days)")
    def age_days(self, obj: DataKey) -> int:
        return obj.age_days(timezone.now())

    @admin.display(description="Values still using it")
    def values_using_it(self, obj: DataKey) -> str:
        from keys.rotation import count_key_usage, usage_countable

        if not usage_countable(obj.purpose):
            return "cannot be counted (not stored in encrypted columns)"
        usage = count_key_usage(obj)
        return ", ".join(f"{name}: {count}" for name, count in sorted(usage.items())) or "none"

    def has_rotate_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_active and request.user.has_perm("keys.rotate_datakey"))

    @admin.action(description="Rotate: new active key for the selected keys' purposes", permissions=["rotate"])
    @_guarded
    def rotate_purpose(self, request: HttpRequest, queryset: QuerySet[DataKey]) -> None:
        from keys.rotation import rotate_data_key

        for purpose in sorted(set(queryset.values_list("purpose", flat=True))):
            key = rotate_data_key(purpose)
            self.message_user(request, f"{purpose}: new active key {key.pk}.")

    @admin.action(description="Start re-encryption onto the active keys", permissions=["rotate"])
    @_guarded
    def start_reencryption(self, request: HttpRequest, queryset: QuerySet[DataKey]) -> None:
        from keys.tasks import reencrypt_task

        for purpose in sorted(set(queryset.values_list("purpose", flat=True)) & {"field", "index"}):
            reencrypt_task.delay(purpose)
            self.message_user(
                request, f"Re-encryption of {purpose} values started; progress is under Re-encryption jobs."
            )

    @admin.action(description="Retire (only keys no value uses)", permissions=["rotate"])
    @_guarded
    def retire_keys(self, request: HttpRequest, queryset: QuerySet[DataKey]) -> None:
        from keys.rotation import retire_data_key

        for key in queryset:
            try:
                retire_data_key(key)
                self.message_user(request, f"Data key {key.pk} retired.")
            except KeysError as exc:
                self.message_user(request, str(exc), level=messages.ERROR)


@admin.register(ReencryptionJob)
class ReencryptionJobAdmin(_ReadOnly, _JobAdminBase):
    list_display = ("model", "purpose", "status", "progress", "rows_done", "rows_total", "rows_changed", "updated_at")
    list_filter = ("status", "purpose")
    readonly_fields = [f.name for f in ReencryptionJob._meta.fields]

    @admin.display(description="Progress")
    def progress(self, job: ReencryptionJob) -> str:
        return f"{job.percent:.1f}%"


@admin.register(SubjectKey)
class SubjectKeyAdmin(_ReadOnly, _SubjectAdminBase):
    list_display = ("subject", "provider", "wrapping_key_id", "created_at", "shredded_at")
    fields = ("subject", "provider", "wrapping_key_id", "created_at", "shredded_at")
    readonly_fields = fields
