"""Sign-in pages: password, second factor or enrolment, second-factor settings, re-authentication,
password reset. Thin: the flow is ``neonpro.accounts.signin``, the changes ``neonpro.accounts.mfa``."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import django_otp
from django import forms
from django.conf import settings
from django.contrib.auth import REDIRECT_FIELD_NAME, user_login_failed
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse, reverse_lazy
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods
from django_otp.admin import OTPAdminSite
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import APIException
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from neonpro.accounts import lockout, mfa, signin
from neonpro.accounts.mfa_models import RecoveryCode
from neonpro.accounts.reauth import reauth_required, reauthenticate, reauthenticated_recently
from neonpro.accounts.session_api import IsSessionAuthenticated
from neonpro.accounts.signals import account_change_via
from neonpro.accounts.signin_events import REASON, STAGE, USER_ID
from neonpro.security.schema import errors
from neonpro.security.serializers import StrictSerializer

ENROLMENT = "neonpro_mfa_enrolment"


class SignInForm(AuthenticationForm):
    error_messages = {
        **AuthenticationForm.error_messages,
        "invalid_login": "Your username and password didn't match. Please try again.",
        "agent": "Agent accounts do not sign in here: they use the API with their token or certificate.",
    }

    def confirm_login_allowed(self, user: Any) -> None:
        super().confirm_login_allowed(user)
        if user.role == "agent":
            raise ValidationError(self.error_messages["agent"], code="agent")


class CodeForm(forms.Form):
    token = forms.CharField(
        label="Code",
        max_length=32,
        strip=True,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "text", "autofocus": True}),
    )


class ReauthForm(forms.Form):
    password = forms.CharField(
        label="Your password", strip=False, widget=forms.PasswordInput(attrs={"autocomplete": "current-password"})
    )
    token = forms.CharField(
        label="Code from your authenticator app (or a recovery code)",
        max_length=32,
        required=False,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code"}),
    )


def _next_url(request: HttpRequest) -> str:
    """The validated ``next`` (this site only), or ''."""
    wanted = request.POST.get(REDIRECT_FIELD_NAME) or request.GET.get(REDIRECT_FIELD_NAME) or ""
    safe = url_has_allowed_host_and_scheme(wanted, allowed_hosts={request.get_host()}, require_https=True)
    return wanted if safe else ""


def _with_next(url: str, next_url: str) -> str:
    return f"{url}?{urlencode({REDIRECT_FIELD_NAME: next_url})}" if next_url else url


def _after_sign_in(request: HttpRequest) -> str:
    return _next_url(request) or reverse("home")


class SignInView(auth_views.LoginView):
    template_name = "registration/login.html"
    form_class = SignInForm
    redirect_authenticated_user = True

    def form_valid(self, form: Any) -> HttpResponse:
        user = form.get_user()
        step = signin.begin_sign_in(self.request, user)
        if step == signin.DONE:
            return HttpResponseRedirect(self.get_success_url())
        target = reverse("signin_verify" if step == signin.VERIFY else "signin_enrol")
        return HttpResponseRedirect(_with_next(target, self.get_redirect_url()))


def locked_out_page(request: HttpRequest) -> dict[str, Any]:
    """The sign-in page's context when the client is locked out (neonpro.accounts.lockout)."""
    return {"form": SignInForm(request), "locked_message": lockout.locked_message(), REDIRECT_FIELD_NAME: ""}


def _restart(request: HttpRequest) -> HttpResponse:
    return redirect_to_login(_next_url(request) or reverse("home"), reverse("login"))


@sensitive_post_parameters("token")
@require_http_methods(["GET", "POST"])
def verify_view(request: HttpRequest) -> HttpResponse:
    """Step two: a code from the authenticator app, or a recovery code."""
    user = signin.pending_user(request)
    if user is None:
        return _restart(request)
    form = CodeForm(request.POST or None)
    error = ""
    if request.method == "POST" and form.is_valid():
        verification = signin.check_second_factor(request, user, form.cleaned_data["token"])
        if verification.device is not None:
            signin.complete_sign_in(request, user, device=verification.device)
            return HttpResponseRedirect(_after_sign_in(request))
        error = signin.failure_message(verification.reason)
    context = {"form": form, "error": error, REDIRECT_FIELD_NAME: _next_url(request)}
    return render(request, "registration/signin_verify.html", context)


def _enrolment_device(request: HttpRequest, user: Any) -> Any:
    device = mfa.pending_enrolment(user, request.session.get(ENROLMENT))
    if device is None:
        device = mfa.start_enrolment(user)
        request.session[ENROLMENT] = str(device.pk)
    return device


def _enrol(request: HttpRequest, user: Any, *, signing_in: bool) -> HttpResponse:
    device = _enrolment_device(request, user)
    form = CodeForm(request.POST or None)
    error = ""
    if request.method == "POST" and form.is_valid():
        try:
            codes = mfa.confirm_enrolment(
                user, device, form.cleaned_data["token"], session_key=request.session.session_key
            )
        except mfa.MFAError as refused:
            error = str(refused)
            user_login_failed.send(
                sender=__name__,
                credentials={"username": user.get_username(), STAGE: "mfa", REASON: "enrolment_code", USER_ID: user.pk},
                request=request,
            )
        else:
            request.session.pop(ENROLMENT, None)
            if signing_in:
                signin.complete_sign_in(request, user, device=device)
            else:
                django_otp.login(request, device)  # this session stays verified, by the new device
            context = {"codes": codes, "continue_url": _after_sign_in(request) if signing_in else reverse("mfa")}
            return render(request, "registration/recovery_codes.html", context)
    context = {
        "form": form,
        "error": error,
        "qr": mfa.qr_data_uri(device),
        "secret": mfa.secret_text(device),
        "signing_in": signing_in,
        REDIRECT_FIELD_NAME: _next_url(request),
    }
    return render(request, "registration/mfa_enrol.html", context)


@sensitive_post_parameters("token")
@require_http_methods(["GET", "POST"])
def enrol_view(request: HttpRequest) -> HttpResponse:
    """First sign-in of someone who must have a second factor: set up the authenticator app."""
    user = signin.pending_user(request)
    if user is None:
        return _restart(request)
    return _enrol(request, user, signing_in=True)


@login_required
@reauth_required
@sensitive_post_parameters("token")
@require_http_methods(["GET", "POST"])
def replace_view(request: HttpRequest) -> HttpResponse:
    """Set up (or replace) the authenticator of the signed-in user, after re-authenticating."""
    return _enrol(request, request.user, signing_in=False)


@login_required
@require_http_methods(["GET"])
def settings_view(request: HttpRequest) -> HttpResponse:
    user: Any = request.user
    context = {
        "enrolled": mfa.has_second_factor(user),
        "required": mfa.mfa_required(user),
        "codes_left": RecoveryCode.objects.filter(device__user=user, used_at__isnull=True).count(),
        "recent": reauthenticated_recently(request),
    }
    return render(request, "registration/mfa_settings.html", context)


@login_required
@reauth_required
@require_http_methods(["POST"])
def recovery_codes_view(request: HttpRequest) -> HttpResponse:
    try:
        codes = mfa.regenerate_recovery_codes(request.user, session_key=request.session.session_key)  # type: ignore[arg-type]
    except mfa.MFAError as refused:
        return render(request, "registration/mfa_settings.html", {"error": str(refused)}, status=409)
    return render(request, "registration/recovery_codes.html", {"codes": codes, "continue_url": reverse("mfa")})


@login_required
@reauth_required
@require_http_methods(["POST"])
def remove_view(request: HttpRequest) -> HttpResponse:
    try:
        mfa.remove_second_factor(request.user, session_key=request.session.session_key)  # type: ignore[arg-type]
    except mfa.MFAError as refused:
        return render(request, "registration/mfa_settings.html", {"error": str(refused), "enrolled": True}, status=409)
    return HttpResponseRedirect(reverse("mfa"))


@login_required
@sensitive_post_parameters("password", "token")
@require_http_methods(["GET", "POST"])
def reauth_view(request: HttpRequest) -> HttpResponse:
    form = ReauthForm(request.POST or None)
    error = ""
    if request.method == "POST" and form.is_valid():
        error = reauthenticate(request, password=form.cleaned_data["password"], otp=form.cleaned_data["token"]) or ""
        if not error:
            return HttpResponseRedirect(_next_url(request) or reverse("mfa"))
    context = {
        "form": form,
        "error": error,
        "needs_code": mfa.needs_second_factor(request.user),  # type: ignore[arg-type]
        REDIRECT_FIELD_NAME: _next_url(request),
    }
    return render(request, "registration/reauth.html", context)


class ReauthSerializer(StrictSerializer):
    password = serializers.CharField(trim_whitespace=False, max_length=4096)
    otp = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=32, help_text="A current code, when one is needed."
    )


class ReauthDoneSerializer(serializers.Serializer[Any]):
    reauthenticated = serializers.BooleanField()
    valid_for_seconds = serializers.IntegerField(help_text="How long the re-authentication stays good for.")


class ReauthFailed(APIException):
    status_code = status.HTTP_403_FORBIDDEN
    default_code = "reauth_failed"
    default_detail = "The password or the code is not right."


class ReauthAPIView(APIView):
    """``POST /api/v1/reauth/`` ``{"password", "otp"}``: re-authenticate this session."""

    permission_classes = [IsAuthenticated, IsSessionAuthenticated]

    @extend_schema(
        operation_id="reauth",
        summary="Re-authenticate this session (password, and the code where one is needed)",
        request=ReauthSerializer,
        responses={200: ReauthDoneSerializer, **errors(403, c403="Not a session, or a wrong password or code.")},
    )
    def post(self, request: Request) -> Response:
        serializer = ReauthSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        fields = serializer.validated_data
        error = reauthenticate(request._request, password=fields["password"], otp=fields["otp"])
        if error:
            raise ReauthFailed(error)
        done = {"reauthenticated": True, "valid_for_seconds": int(settings.NEONPRO_REAUTH_SECONDS)}
        return Response(ReauthDoneSerializer(done).data)


class OTPRequiredAdminSite(OTPAdminSite):
    """The Django admin, for verified (second-factor) sessions only, signed in through the
    site's own two-step sign-in: its own login form (password only) is never shown."""

    def login(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        if request.user.is_authenticated:
            raise PermissionDenied("The admin needs a sign-in with a second factor: set one up under /accounts/mfa/.")
        return redirect_to_login(_next_url(request) or reverse("admin:index"), reverse("login"))


class PasswordResetView(auth_views.PasswordResetView):
    """The same answer whether or not an account has that address (no enumeration)."""

    template_name = "registration/password_reset_form.html"
    email_template_name = "registration/password_reset_email.txt"
    subject_template_name = "registration/password_reset_subject.txt"
    success_url = reverse_lazy("password_reset_done")


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    template_name = "registration/password_reset_confirm.html"
    success_url = reverse_lazy("password_reset_complete")

    def form_valid(self, form: Any) -> HttpResponse:
        with account_change_via("password_reset"):  # audited by neonpro.accounts.signals
            return super().form_valid(form)
