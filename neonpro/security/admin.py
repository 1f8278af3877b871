"""Admin for the periodic-task schedule: says when nothing will run it."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse
from django_celery_beat.admin import PeriodicTaskAdmin as BasePeriodicTaskAdmin
from django_celery_beat.models import PeriodicTask

from neonpro.security.scheduler import EMBEDDED_NOTICE, scheduler_runs


class PeriodicTaskAdmin(BasePeriodicTaskAdmin):
    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        if not scheduler_runs():
            messages.warning(request, EMBEDDED_NOTICE)
        return super().changelist_view(request, extra_context)  # type: ignore[no-any-return]

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if not scheduler_runs():
            messages.warning(request, EMBEDDED_NOTICE)
        return super().change_view(request, object_id, form_url, extra_context)  # type: ignore[no-any-return]


admin.site.unregister(PeriodicTask)
admin.site.register(PeriodicTask, PeriodicTaskAdmin)
