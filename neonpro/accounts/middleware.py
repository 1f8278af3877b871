"""A temporary password is good for one thing: choosing a new one."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse

from neonpro.security.error_body import error_response
from neonpro.security.errors import is_api


class PasswordChangeRequiredMiddleware:
    """After an administrator issued a temporary password, every page but the password
    change (and signing out) leads there; the API refuses with a 403 that says why."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated and getattr(user, "must_change_password", False):
            change = reverse("password_change")
            allowed = (change, reverse("password_change_done"), reverse("logout"), "/favicon.ico")
            static = "/" + settings.STATIC_URL.lstrip("/")
            if request.path not in allowed and not request.path.startswith(static):
                if is_api(request):
                    message = f"Choose a new password first ({change}): yours is a temporary one."
                    return error_response("password_change_required", message, 403)
                return redirect(change)
        return self.get_response(request)
