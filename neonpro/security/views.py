from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, HttpResponse, HttpResponsePermanentRedirect, JsonResponse
from django.shortcuts import render
from django.templatetags.static import static

NOTICES = {
    "password_reset_by_admin": "An administrator issued a temporary password for your account.",
    "break_glass": "A clinician used emergency access (break-glass) to a patient record.",
    "break_glass_many": "A clinician reached the daily threshold of emergency-access uses.",
}


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """The signed-in home page, with the person's own unread notices (ids and dates, never PHI)."""
    from neonpro.accounts.models import Notification

    notices = [
        {"when": n.created_at, "text": NOTICES.get(n.kind, n.kind)}
        for n in Notification.objects.filter(recipient=request.user, read_at__isnull=True)[:20]
    ]
    return render(request, "home.html", {"notices": notices})


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
