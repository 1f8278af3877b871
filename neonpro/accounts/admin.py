"""Accounts in the admin: administrators manage staff accounts, never choose passwords, and
do not learn who the patients are.

* No password field anywhere: a new account gets no usable password, and "reset" issues a
  one-time temporary password after the administrator re-enters their own
  (``neonpro.accounts.services.issue_temporary_password``).
* Administrators cannot change their own role, flags, groups or permissions, and only
  superusers grant superuser status or single permissions. Accounts are deactivated, never
  deleted (their history stays attributable).
* Patient portal accounts are not in the user list at all; "Patient portal accounts" shows
  them by opaque id only (no username, name or email), to deactivate or reset one.
* Every change is in the audit chain (``neonpro.accounts.signals``).
* "End all sessions" signs an account out everywhere (``end_all_sessions``), audited.
* "Unlock sign-in" lifts a lock-out after repeated failures (``neonpro.accounts.lockout``).
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse

from neonpro.accounts import (
    agent_admin,  # noqa: F401 - agents, their tokens and certificates
    notifications,
)
from neonpro.accounts.models import AccountChange, Notification, PatientAccount, User
from neonpro.accounts.services import issue_temporary_password
from neonpro.accounts.session_services import end_all_sessions
from neonpro.security.admin_mixins import ReadOnlyAdminMixin
from neonpro.security.admin_pages import KeysetModelAdmin, recent_values_filter

SELF_PROTECTED = ("role", "is_active", "is_staff", "is_superuser", "groups", "user_permissions")
# Rights only superusers hand out: staff access, groups (Administrators, Privacy officers)
# and single permissions.
SUPERUSER_ONLY = ("is_staff", "is_superuser", "groups", "user_permissions")


class NewAccountForm(forms.ModelForm):  # type: ignore[type-arg]
    """A new account has no usable password until a temporary one is issued."""

    class Meta:
        model = User
        fields = ("username", "role", "first_name", "last_name", "email")

    def save(self, commit: bool = True) -> User:
        user: User = super().save(commit=False)
        user.set_unusable_password()
        if commit:
            user.save()
        return user


class ConfirmItIsYouForm(forms.Form):
    your_password = forms.CharField(
        label="Your password", strip=False, widget=forms.PasswordInput(attrs={"autocomplete": "current-password"})
    )


class _TemporaryPasswordMixin:
    """The "reset password" page of an account: a temporary password, never a chosen one."""

    admin_site: admin.AdminSite

    def get_urls(self) -> list[Any]:
        return [
            path(
                "<id>/password/",
                self.admin_site.admin_view(self.temporary_password_view),
                name=f"{self._url_name('password_change')}",
            ),
            *super().get_urls(),  # type: ignore[misc]
        ]

    def _url_name(self, suffix: str) -> str:
        opts = self.model._meta  # type: ignore[attr-defined]
        return f"{opts.app_label}_{opts.model_name}_{suffix}"

    def temporary_password_view(self, request: HttpRequest, id: str) -> HttpResponse:
        target = self.get_object(request, unquote(id))  # type: ignore[attr-defined]
        if target is None:
            raise Http404("No such account.")
        if not self.has_change_permission(request, target):  # type: ignore[attr-defined]
            raise PermissionDenied
        form = ConfirmItIsYouForm(request.POST or None)
        password = None
        if request.method == "POST" and form.is_valid():
            try:
                password = issue_temporary_password(
                    request.user,  # type: ignore[arg-type]
                    target,
                    actor_password=form.cleaned_data["your_password"],
                )
            except PermissionDenied as exc:
                form.add_error("your_password", str(exc))
        context = {
            **self.admin_site.each_context(request),
            "title": "Temporary password",
            "target": target,
            "form": form,
            "password": password,
            "back": reverse(f"admin:{self._url_name('change')}", args=[target.pk]),
        }
        return TemplateResponse(request, "admin/accounts/user/temporary_password.html", context)


@admin.action(description="End all sessions of the selected accounts", permissions=["change"])
def end_sessions_action(modeladmin: admin.ModelAdmin[Any], request: HttpRequest, queryset: QuerySet[Any]) -> None:
    ended, refused = 0, 0
    for user in queryset:
        try:
            ended += end_all_sessions(request.user, user)  # type: ignore[arg-type]
        except PermissionDenied:
            refused += 1
    modeladmin.message_user(request, f"Ended {ended} session(s); they must sign in again.")
    if refused:
        modeladmin.message_user(request, f"Skipped {refused} account(s) you may not change.", level="warning")


@admin.register(User)
class UserAdmin(_TemporaryPasswordMixin, BaseUserAdmin):
    actions = [end_sessions_action, "unlock_sign_in"]
    list_display = ("username", "role", "is_active", "is_staff", "last_login")
    list_filter = ("role", "is_active", "is_staff")
    fieldsets = (*BaseUserAdmin.fieldsets, ("Role", {"fields": ("role", "must_change_password")}))  # type: ignore[misc]
    add_form = NewAccountForm
    add_fieldsets = (
        (None, {"classes": ("wide",), "fields": ("username", "role", "first_name", "last_name", "email")}),
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[User]:
        return super().get_queryset(request).exclude(role=User.Role.PATIENT)

    @admin.action(description="Unlock sign-in (forget failed attempts)", permissions=["change"])
    def unlock_sign_in(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        from neonpro.accounts.lockout import unlock

        removed = sum(unlock(username=user.get_username()) for user in queryset)
        self.message_user(request, f"Sign-in unlocked for {queryset.count()} account(s) ({removed} record(s) removed).")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        fields = set(super().get_readonly_fields(request, obj)) | {"must_change_password", "last_login", "date_joined"}
        if not request.user.is_superuser:
            fields |= set(SUPERUSER_ONLY)
        if obj is not None and obj.pk == request.user.pk:
            fields |= set(SELF_PROTECTED)
        return tuple(sorted(fields))

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # A superuser's account is changed by superusers only (deactivating one is a takeover too).
        if obj is not None and obj.is_superuser and not request.user.is_superuser:
            return False
        return bool(super().has_change_permission(request, obj))

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(PatientAccount)
class PatientAccountAdmin(_TemporaryPasswordMixin, admin.ModelAdmin):  # type: ignore[type-arg]
    """Patient portal accounts by opaque id: deactivate, reactivate, reset or sign out — nothing more."""

    actions = [end_sessions_action]
    list_display = ("id", "is_active", "last_login", "date_joined")
    list_filter = ("is_active",)
    fields = ("id", "is_active", "last_login", "date_joined", "must_change_password", "password_reset")
    readonly_fields = ("id", "last_login", "date_joined", "must_change_password", "password_reset")
    ordering = ("date_joined",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[PatientAccount]:
        return super().get_queryset(request).filter(role=User.Role.PATIENT)

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest | None = None) -> bool:
        # No ?username__startswith=… or ?last_name=… oracles: only the active flag filters.
        return lookup == "is_active__exact"

    @admin.display(description="Password")
    def password_reset(self, obj: PatientAccount) -> str:
        from django.utils.html import format_html

        return format_html('<a href="{}">Issue a temporary password</a>', "../password/")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # portal accounts are created with the patient's registration

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class YoursFilter(admin.SimpleListFilter):
    """The viewing administrator's own notices (what the admin index counts as unread)."""

    title = "addressed to"
    parameter_name = "mine"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("unread", "You: unread"), ("all", "You: all")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Notification]) -> QuerySet[Notification]:
        if self.value() == "unread":
            return queryset.filter(recipient=request.user, read_at__isnull=True)
        if self.value() == "all":
            return queryset.filter(recipient=request.user)
        return queryset


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdminMixin, KeysetModelAdmin):
    """Evidence (break-glass notices among them): viewable, never edited or deleted. An
    administrator marks their own notices read (the same service as /notifications/)."""

    list_display = ("created_at", "kind", "text", "recipient_id", "unread", "read_at")
    list_filter = (YoursFilter, recent_values_filter("kind", "kind"))
    fields = ("recipient_id", "kind", "text", "details", "created_at", "read_at")
    readonly_fields = fields
    ordering = keyset_order = ("-created_at", "-id")  # index notification_recent
    actions = ["mark_read"]

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest | None = None) -> bool:
        # Not through the recipient's username or role: their own notices are "mine".
        return lookup in ("kind", "kind__exact", YoursFilter.parameter_name)

    @admin.display(description="Notice")
    def text(self, notification: Notification) -> str:
        return notifications.TEXTS.get(notification.kind, notification.kind)

    @admin.display(boolean=True, description="Unread")
    def unread(self, notification: Notification) -> bool:
        return notification.read_at is None

    @admin.action(description="Mark read (those addressed to you)", permissions=["view"])
    def mark_read(self, request: HttpRequest, queryset: QuerySet[Notification]) -> None:
        selected = list(queryset.values_list("pk", flat=True))
        done = notifications.mark_read(request.user, selected)
        self.message_user(request, f"Marked {done} of your notices read.")
        if done < len(selected):
            self.message_user(
                request, f"{len(selected) - done} selected notice(s) were not yours or already read: left as they were."
            )


@admin.register(AccountChange)
class AccountChangeAdmin(ReadOnlyAdminMixin, KeysetModelAdmin):
    """What the database itself saw written to accounts (column names, never values)."""

    list_display = ("occurred_at", "table_name", "operation", "row_id", "columns", "database_role", "acting_as")
    list_filter = (
        recent_values_filter("table_name", "table name"),
        recent_values_filter("operation", "operation"),
        recent_values_filter("database_role", "database role"),
    )
    readonly_fields = [f.name for f in AccountChange._meta.fields]
    ordering = keyset_order = ("-id",)
