"""Changing one's own password (also the forced change after a temporary password)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import PasswordChangeForm
from django.http import HttpResponse
from django.urls import reverse_lazy

from neonpro.accounts.services import complete_password_change
from neonpro.accounts.signals import account_change_via


class NewPasswordForm(PasswordChangeForm):
    """After a temporary password, the new one must be different: the administrator knew the old."""

    def clean_new_password1(self) -> str:
        password: str = self.cleaned_data["new_password1"]
        if self.user.must_change_password and self.user.check_password(password):
            raise forms.ValidationError("Choose a password of your own, not the temporary one.")
        return password


class PasswordChangeView(auth_views.PasswordChangeView):
    template_name = "registration/password_change_form.html"
    success_url = reverse_lazy("password_change_done")
    form_class = NewPasswordForm

    def form_valid(self, form: Any) -> HttpResponse:
        with account_change_via("self_service"):
            response = super().form_valid(form)  # keeps this session, ends the others
            complete_password_change(self.request.user)  # type: ignore[arg-type]
        return response


class PasswordChangeDoneView(auth_views.PasswordChangeDoneView):
    template_name = "registration/password_change_done.html"
