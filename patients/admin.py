"""Administrators manage care teams and review break-glass use; they do not read PHI."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from neonpro.security.admin_mixins import ReadOnlyAdminMixin
from neonpro.security.admin_pages import KeysetModelAdmin
from patients import break_glass
from patients.models import CareTeamMembership, EmergencyAccessGrant


@admin.register(CareTeamMembership)
class CareTeamMembershipAdmin(ReadOnlyAdminMixin, KeysetModelAdmin):
    """Who is on which care team. Changes go through patients.services (audited), not forms:
    the patient field would need a patient list that administrators cannot see."""

    list_display = ("id", "patient_ref", "clinician", "starts_on", "ends_on")
    list_filter = ("starts_on", "ends_on")
    fields = ("id", "patient_ref", "clinician", "starts_on", "ends_on")
    readonly_fields = fields
    # Never join the patient table: administrators cannot see patients, so an INNER JOIN on
    # it (what select_related() does for every foreign key) would hide every row.
    list_select_related = ("clinician",)
    # Along the (clinician, patient) index: each clinician's teams together.
    keyset_order = ("clinician_id", "patient_id", "id")

    @admin.display(description="Patient")
    def patient_ref(self, membership: CareTeamMembership) -> str:
        return str(membership.patient_id)  # the id only: administrators cannot open the record


class ReviewFilter(admin.SimpleListFilter):
    title = "review"
    parameter_name = "review"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("awaiting", "Awaiting review"), ("reviewed", "Reviewed")]

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[EmergencyAccessGrant]
    ) -> QuerySet[EmergencyAccessGrant]:
        if self.value() == "awaiting":
            return queryset.filter(reviewed_at__isnull=True)
        if self.value() == "reviewed":
            return queryset.filter(reviewed_at__isnull=False)
        return queryset


@admin.register(EmergencyAccessGrant)
class EmergencyAccessGrantAdmin(ReadOnlyAdminMixin, KeysetModelAdmin):
    """Every break-glass use, and the privacy officers' review queue ("Awaiting review").

    Read-only: grants are made and ended by clinicians; a review is one of the actions, and
    only users with the review permission (the "Privacy officers" group) take them or see a
    grant's written reason — free clinical text, which plain administrators do not read.
    """

    list_display = ("granted_at", "clinician", "patient_ref", "expires_at", "ended_at", "is_active_now", "review")
    list_filter = (ReviewFilter, "review_outcome", "granted_at")
    fields = (
        "id",
        "clinician",
        "patient_ref",
        "granted_at",
        "expires_at",
        "ended_at",
        "reviewed_at",
        "reviewed_by",
        "review_outcome",
    )
    readonly_fields = fields
    ordering = keyset_order = ("-granted_at", "-id")
    list_select_related = ("clinician",)  # not the patient: see CareTeamMembershipAdmin
    actions = ["mark_appropriate", "mark_inappropriate", "mark_follow_up"]
    change_form_template = "admin/patients/emergencyaccessgrant/change_form.html"

    @admin.display(description="Patient")
    def patient_ref(self, grant: EmergencyAccessGrant) -> str:
        return str(grant.patient_id)

    @admin.display(boolean=True, description="Active")
    def is_active_now(self, grant: EmergencyAccessGrant) -> bool:
        return grant.is_active(timezone.now())

    @admin.display(description="Review")
    def review(self, grant: EmergencyAccessGrant) -> str:
        return grant.get_review_outcome_display() if grant.reviewed_at else "awaiting"

    def has_review_permission(self, request: HttpRequest) -> bool:
        return break_glass.may_review(request.user)

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        extra = dict(extra_context or {})
        grant = self.get_object(request, object_id)
        if grant is not None and self.has_review_permission(request):
            extra["reason"] = break_glass.emergency_reason_for_review(request.user, grant)  # audited
        return super().change_view(request, object_id, form_url, extra)

    def _review(self, request: HttpRequest, queryset: QuerySet[EmergencyAccessGrant], outcome: str) -> None:
        for grant in queryset:
            try:
                break_glass.review_emergency_access(request.user, grant.pk, outcome=outcome)
                self.message_user(request, f"Emergency access {grant.pk} reviewed: {outcome}.")
            except (PermissionDenied, ValidationError) as exc:
                message = "; ".join(getattr(exc, "messages", [str(exc)]))
                self.message_user(request, f"Emergency access {grant.pk}: {message}", level=messages.ERROR)

    @admin.action(description="Review: appropriate", permissions=["review"])
    def mark_appropriate(self, request: HttpRequest, queryset: QuerySet[EmergencyAccessGrant]) -> None:
        self._review(request, queryset, EmergencyAccessGrant.ReviewOutcome.APPROPRIATE)

    @admin.action(description="Review: inappropriate", permissions=["review"])
    def mark_inappropriate(self, request: HttpRequest, queryset: QuerySet[EmergencyAccessGrant]) -> None:
        self._review(request, queryset, EmergencyAccessGrant.ReviewOutcome.INAPPROPRIATE)

    @admin.action(description="Review: needs follow-up", permissions=["review"])
    def mark_follow_up(self, request: HttpRequest, queryset: QuerySet[EmergencyAccessGrant]) -> None:
        self._review(request, queryset, EmergencyAccessGrant.ReviewOutcome.FOLLOW_UP)
