from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, HttpResponse, HttpResponsePermanentRedirect, JsonResponse
from django.shortcuts import render
from django.templatetags.static import static


@login_required
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "home.html")


def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness for load balancers: database and cache reachable. No details leak."""
    status = {"database": "ok", "cache": "ok"}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception:
        status["database"] = "error"
    try:
        cache.set("neonpro:healthz", "1", 5)
        if cache.get("neonpro:healthz") != "1":
            status["cache"] = "error"
    except Exception:
        status["cache"] = "error"
    ok = all(v == "ok" for v in status.values())
    return JsonResponse(status, status=200 if ok else 503)


def favicon(request: HttpRequest) -> HttpResponse:
    """Browsers ask for /favicon.ico on every page that names no icon (the admin's)."""
    return HttpResponsePermanentRedirect(static("neonpro/favicon.svg"))
