"""Administrators manage care teams and review break-glass use; they do not read PHI."""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.utils import timezone

from neonpro.accounts.models import User
from neonpro.accounts.reauth import reauth_required_action, reauth_url, reauthenticated_recently
from neonpro.security.admin_mixins import ReadOnlyAdminMixin
from neonpro.security.admin_pages import KeysetModelAdmin
from neonpro.security.context import system_context
from patients import break_glass, services
from patients.models import CareTeamMembership, EmergencyAccessGrant


class AddToCareTeamForm(forms.Form):
    """A patient by id (administrators never see who a patient is), a clinician by username."""

    patient = forms.UUIDField(
        label="Patient id", help_text="The patient's id, as care-team lists and break-glass grants show it."
    )
    clinician = forms.CharField(label="Clinician's username", max_length=150)
    starts_on = forms.DateField(
        required=False, widget=forms.DateInput(attrs={"type": "date"}), help_text="Empty: today."
    )
    ends_on = forms.DateField(
        required=False, widget=forms.DateInput(attrs={"type": "date"}), help_text="Empty: until ended."
    )


REFUSALS = {
    # The constraints the service leaves to the database (its full_clean skips them).
    "careteam_unique_start": "This clinician is on this patient's team from that day already.",
    "careteam_ends_after_start": "A membership cannot end before it starts.",
}


def _refusal(exc: IntegrityError) -> str:
    found = re.search(r'constraint "(\w+)"', str(exc))
    return REFUSALS.get(found.group(1) if found else "", "Refused: it conflicts with an existing membership.")


@admin.register(CareTeamMembership)
class CareTeamMembershipAdmin(ReadOnlyAdminMixin, KeysetModelAdmin):
    """Who is on which care team. Added and ended through patients.services (audited, with
    the administrator as the actor), never by saving a form: the patient field of a model form
    would need a patient list that administrators cannot see.

    The services run as the system, as ``manage.py careteam`` does: they check that the
    patient exists, which the administrator's own identity cannot see. Who may is the
    model's add and change permissions (the Administrators group has them)."""

    list_display = ("id", "patient_ref", "clinician", "starts_on", "ends_on")
    list_filter = ("starts_on", "ends_on")
    fields = ("id", "patient_ref", "clinician", "starts_on", "ends_on")
    readonly_fields = fields
    # Never join the patient table: administrators cannot see patients, so an INNER JOIN on
    # it (what select_related() does for every foreign key) would hide every row.
    list_select_related = ("clinician",)
    # Along the (clinician, patient) index: each clinician's teams together.
    keyset_order = ("clinician_id", "patient_id", "id")
    actions = ["end_memberships"]

    @admin.display(description="Patient")
    def patient_ref(self, membership: CareTeamMembership) -> str:
        return str(membership.patient_id)  # the id only: administrators cannot open the record

    def has_add_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("patients.add_careteammembership"))

    def has_end_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("patients.change_careteammembership"))

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if not self.has_add_permission(request):
            raise PermissionDenied
        if not reauthenticated_recently(request):
            # Lasting access to a patient's record: who is granting it? (as key actions do)
            self.message_user(request, "Confirm who you are (password and code) to change a care team.")
            return HttpResponseRedirect(reauth_url(request.get_full_path()))
        form = AddToCareTeamForm(request.POST or None, initial={"patient": request.GET.get("patient")})
        if request.method == "POST" and form.is_valid():
            membership = self._add(form)
            if membership is not None:
                self.message_user(request, f"Care-team membership {membership.pk} created.")
                return redirect("admin:patients_careteammembership_changelist")
        context = {
            **self.admin_site.each_context(request),
            "title": "Add a clinician to a patient's care team",
            "form": form,
            "opts": self.opts,
        }
        return TemplateResponse(request, "admin/patients/careteammembership/add.html", context)

    def _add(self, form: AddToCareTeamForm) -> CareTeamMembership | None:
        fields = form.cleaned_data
        clinician = User.objects.filter(username=fields["clinician"], is_active=True).first()
        if clinician is None:
            form.add_error("clinician", "No active account has this username.")
            return None
        try:
            with system_context("careteam add (admin site)") as identity:
                return services.add_to_care_team(
                    identity,
                    patient_id=fields["patient"],
                    clinician=clinician,
                    starts_on=fields["starts_on"],
                    ends_on=fields["ends_on"],
                )
        except ValidationError as exc:
            for field, errors in exc.message_dict.items():
                # The foreign key's own message repeats the id as a Python repr.
                form.add_error(field, "No patient has this id." if field == "patient" else errors)
        except IntegrityError as exc:
            form.add_error(None, _refusal(exc))
        return None

    @admin.action(description="End the selected memberships today", permissions=["end"])
    @reauth_required_action
    def end_memberships(self, request: HttpRequest, queryset: QuerySet[CareTeamMembership]) -> None:
        today = timezone.localdate()
        for membership in queryset:
            try:
                with system_context("careteam end (admin site)") as identity:
                    services.end_care_team_membership(identity, membership.pk, on=today)
            except ValidationError as exc:  # ended before today already: ending it now would extend it
                self.message_user(request, f"Care-team membership {membership.pk}: {' '.join(exc.messages)}")
            except IntegrityError as exc:
                self.message_user(request, f"Care-team membership {membership.pk}: {_refusal(exc)}", messages.ERROR)
            else:
                self.message_user(request, f"Care-team membership {membership.pk} ends today ({today}).")


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
