"""API rate limits per agent and per signed-in user, counted in the default cache (Redis).

Each principal has its own budget: ``NEONPRO_API_RATE_AGENT`` for every agent (default
600/min), ``NEONPRO_API_RATE_USER`` for every other account (default 1200/min); ``off`` (or
empty) disables one. Read at each request, so a changed setting applies without a restart of
anything but the settings. Over budget: DRF's 429 with ``Retry-After`` (seconds).
Unauthenticated requests are not counted here: they get a 401 before any view runs.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

DEFAULT_AGENT_RATE = "600/min"
DEFAULT_USER_RATE = "1200/min"


class _PrincipalRateThrottle(SimpleRateThrottle):
    setting = ""
    default = ""
    agents = False

    def get_rate(self) -> str | None:
        rate = getattr(settings, self.setting, self.default)
        return None if not rate or rate == "off" else str(rate)

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        user = request.user
        if not getattr(user, "is_authenticated", False) or (getattr(user, "role", "") == "agent") != self.agents:
            return None
        return self.cache_format % {"scope": self.scope, "ident": user.pk}


class AgentRateThrottle(_PrincipalRateThrottle):
    scope = "agent"
    setting = "NEONPRO_API_RATE_AGENT"
    default = DEFAULT_AGENT_RATE
    agents = True


class UserRateThrottle(_PrincipalRateThrottle):
    scope = "user"
    setting = "NEONPRO_API_RATE_USER"
    default = DEFAULT_USER_RATE
