from __future__ import annotations

import time

from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, HttpResponse, HttpResponsePermanentRedirect, JsonResponse
from django.shortcuts import redirect, render
from django.templatetags.static import static


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """Where each role starts: clinicians at their patients, patients at their own record,
    everyone else at their unread notices (ids and dates, never PHI)."""
    from neonpro.accounts.notifications import notices_for

    role = getattr(request.user, "role", "")
    if role == "clinician":
        return redirect("patients:list")
    if role == "patient":
        return redirect("portal:home")
    return render(request, "home.html", {"notices": notices_for(request.user, unread_only=True, limit=20)})


PROBE_INTERVAL = 2.0  # seconds: probes hammered at /healthz share one audit append test
_probe_memo: dict[str, tuple[float, str | None]] = {}


def _audit_problem() -> str | None:
    """Why no audit event can be appended (None: one can), probed at most every PROBE_INTERVAL."""
    from neonpro.audit.services import probe_append

    memo = _probe_memo.get("audit")
    if memo is not None and memo[0] > time.monotonic():
        return memo[1]
    problem = probe_append()
    _probe_memo["audit"] = (time.monotonic() + PROBE_INTERVAL, problem)
    return problem


def _checks() -> tuple[dict[str, str], list[str]]:
    """Database and cache reachable, and an audit event appendable (probed, rolled back)."""
    status = {"database": "ok", "cache": "ok", "audit": "ok"}
    reasons: list[str] = []
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception:
        status["database"] = "error"
        reasons.append("database unreachable")
    try:
        cache.set("neonpro:healthz", "1", 5)
        if cache.get("neonpro:healthz") != "1":
            raise ValueError("cache lost a value")
    except Exception:
        status["cache"] = "error"
        reasons.append("cache unreachable")
    audit_problem = _audit_problem()
    if audit_problem is not None:
        status["audit"] = "error"
        reasons.append(f"audit log not writable: {audit_problem}")
    return status, reasons


def healthz(request: HttpRequest) -> JsonResponse:
    """For load balancers: database and cache reachable, audit log writable. No details leak."""
    status, _ = _checks()
    ok = all(v == "ok" for v in status.values())
    return JsonResponse(status, status=200 if ok else 503)


def readyz(request: HttpRequest) -> JsonResponse:
    """Readiness, with the reasons when not ready (what failed, never a value): a service that
    cannot write its audit log must not take requests that need one."""
    status, reasons = _checks()
    return JsonResponse({**status, "ready": not reasons, "reasons": reasons}, status=503 if reasons else 200)


def favicon(request: HttpRequest) -> HttpResponse:
    """Browsers ask for /favicon.ico on every page that names no icon (the admin's)."""
    return HttpResponsePermanentRedirect(static("neonpro/favicon.svg"))
