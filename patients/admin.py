"""Administrators manage care teams and review break-glass use; they do not read PHI."""

from __future__ import annotations

from django.contrib import admin
from django.utils import timezone

from neonpro.security.admin_mixins import ReadOnlyAdminMixin
from patients.models import CareTeamMembership, EmergencyAccessGrant


@admin.register(CareTeamMembership)
class CareTeamMembershipAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):  # type: ignore[type-arg]
    """Who is on which care team. Changes go through patients.services (audited), not forms:
    the patient field would need a patient list that administrators cannot see."""

    list_display = ("id", "patient_ref", "clinician", "starts_on", "ends_on")
    list_filter = ("starts_on", "ends_on")
    fields = ("id", "patient_ref", "clinician", "starts_on", "ends_on")
    readonly_fields = fields
    # Never join the patient table: administrators cannot see patients, so an INNER JOIN on
    # it (what select_related() does for every foreign key) would hide every row.
    list_select_related = ("clinician",)

    @admin.display(description="Patient")
    def patient_ref(self, membership: CareTeamMembership) -> str:
        return str(membership.patient_id)  # the id only: administrators cannot open the record


@admin.register(EmergencyAccessGrant)
class EmergencyAccessGrantAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):  # type: ignore[type-arg]
    """Every break-glass use, for review. Read-only: grants are made and ended by clinicians."""

    list_display = ("granted_at", "clinician", "patient_ref", "expires_at", "ended_at", "is_active_now")
    list_filter = ("granted_at",)
    # Not the reason: it is free clinical text (PHI), which administrators do not read.
    fields = ("id", "clinician", "patient_ref", "granted_at", "expires_at", "ended_at")
    readonly_fields = fields
    ordering = ("-granted_at",)
    list_select_related = ("clinician",)  # not the patient: see CareTeamMembershipAdmin

    @admin.display(description="Patient")
    def patient_ref(self, grant: EmergencyAccessGrant) -> str:
        return str(grant.patient_id)

    @admin.display(boolean=True, description="Active")
    def is_active_now(self, grant: EmergencyAccessGrant) -> bool:
        return grant.is_active(timezone.now())
