"""What every page's layout needs (``ui`` in templates): the role, the unread notices and the
idle sign-out timing the page's script warns with (neonpro/static/neonpro/app.js)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest


def ui(request: HttpRequest) -> dict[str, Any]:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"ui": {}}
    from neonpro.accounts.notifications import unread_count
    from neonpro.accounts.sessions import session_settings

    idle = int(session_settings.idle.total_seconds())
    return {
        "ui": {
            "role": getattr(user, "role", ""),
            "unread": unread_count(user),
            "idle_seconds": idle,
            "warn_seconds": min(int(getattr(settings, "NEONPRO_SESSION_WARN_SECONDS", 120)), idle // 2),
        }
    }
