"""``/accounts/sessions/``: a person's own sessions, and ending one or all the others (POST forms)."""

from __future__ import annotations

import uuid

from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from neonpro.accounts.session_models import UserSession
from neonpro.accounts.session_services import end_other_sessions, end_own_session, live_sessions_of
from neonpro.accounts.sessions import session_settings


@login_required
@require_GET
def session_list(request: HttpRequest) -> HttpResponse:
    context = {
        "sessions": live_sessions_of(request.user),  # type: ignore[arg-type]
        "current": request.session.public_id,  # type: ignore[attr-defined]
        "idle_minutes": int(session_settings.idle.total_seconds() // 60),
        "lifetime_hours": int(session_settings.lifetime.total_seconds() // 3600),
    }
    return render(request, "accounts/sessions.html", context)


@login_required
@require_POST
def session_end(request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
    if pk == request.session.public_id:  # type: ignore[attr-defined]
        logout(request)  # this session: signing out
        return redirect("login")
    try:
        end_own_session(request.user, pk)  # type: ignore[arg-type]
    except UserSession.DoesNotExist:
        raise Http404("No such session.") from None
    messages.success(request, "That session has ended: whoever used it must sign in again.")
    return redirect("sessions")


@login_required
@require_POST
def session_end_others(request: HttpRequest) -> HttpResponse:
    ended = end_other_sessions(request.user, current_session_key=request.session.session_key)  # type: ignore[arg-type]
    messages.success(request, f"Ended {ended} other session{'' if ended == 1 else 's'}; this one goes on.")
    return redirect("sessions")


@require_POST
def session_keepalive(request: HttpRequest) -> HttpResponse:
    """ "Stay signed in" (the idle warning's button): a request, so the session's idle time
    starts again. 401 once the session has ended, so the page goes to the sign-in page."""
    if not request.user.is_authenticated:
        return JsonResponse({"signed_in": False}, status=401)
    request.session.modified = True  # saved: the store records the activity
    return JsonResponse({"signed_in": True, "idle_seconds": int(session_settings.idle.total_seconds())})
