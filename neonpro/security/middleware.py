"""Headers Django's SecurityMiddleware does not set: CSP, and no-store caching."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse


class SecurityHeadersMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        policy = getattr(settings, "CONTENT_SECURITY_POLICY", "")
        if policy and "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = policy
        if not request.path.startswith("/" + settings.STATIC_URL.lstrip("/")):
            # Pages may carry PHI: never cache them in browsers or shared proxies.
            response["Cache-Control"] = "no-store"
        return response
