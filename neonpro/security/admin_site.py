"""The Django admin as NeonPro's: the second-factor admin site under NeonPro's name, with the
security dashboard (data: ``neonpro.security.dashboard``) and, on its index, the viewer's
unread notices.

``neonpro.accounts.signin_events.install`` makes ``admin.site`` an instance of this class at
start-up, so every ``admin.register`` in the apps lands here.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, URLResolver, path
from django.utils import timezone

from neonpro.accounts.notifications import unread_count
from neonpro.accounts.signin_views import OTPRequiredAdminSite
from neonpro.security import dashboard


class NeonProAdminSite(OTPRequiredAdminSite):
    site_header = "NeonPro Records administration"
    site_title = "NeonPro Records admin"
    index_title = "Site administration"

    def get_urls(self) -> list[URLResolver | URLPattern]:
        return [
            path("security/dashboard/", self.admin_view(self.dashboard_view), name="security_dashboard"),
            path(
                "security/dashboard/verify-audit/",
                self.admin_view(self.verify_audit_view),
                name="security_dashboard_verify_audit",
            ),
            *super().get_urls(),
        ]

    def index(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> TemplateResponse:
        context = {
            "security_dashboard": dashboard.may_see(request.user),
            "unread_notices": unread_count(request.user),
            **(extra_context or {}),
        }
        return super().index(request, context)  # type: ignore[no-any-return]

    def dashboard_view(self, request: HttpRequest) -> HttpResponse:
        if not dashboard.may_see(request.user):
            raise PermissionDenied("The security dashboard needs the permission to view the audit log.")
        context = {
            **self.each_context(request),
            "title": "Security dashboard",
            "panels": dashboard.panels_for(request.user, now=timezone.now()),
        }
        return TemplateResponse(request, "admin/security/dashboard.html", context)

    def verify_audit_view(self, request: HttpRequest) -> HttpResponse:
        """POST: run ``audit verify``'s check now; the answer is a message on the dashboard."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not dashboard.may_see(request.user):
            raise PermissionDenied("Verifying the audit chain needs the permission to view the audit log.")
        report = dashboard.verify_audit_chain()
        if report.ok:
            messages.success(request, f"Audit chain intact: {report.checked} events verified.")
        else:
            messages.error(request, "Audit chain broken: " + "; ".join(report.problems))
        return redirect("admin:security_dashboard")
