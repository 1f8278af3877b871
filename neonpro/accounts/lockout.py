"""Lock-out after repeated failures, per account and per address (django-axes, database handler).

* Axes never sees a username in clear: ``keyed_username_of`` (``AXES_USERNAME_CALLABLE``)
  turns the typed username into a keyed hash — HMAC under a key derived from the ``audit``
  MAC key (``keys.crypto.sign``), prefixed with that key's id — of its normalised form
  (NFKC, case-folded, trimmed: ``Dr.House`` and ``dr.house`` are one account to lock). The
  same value names the account in the audit log.
* Each parameter has its own limit: ``NEONPRO_SIGNIN_FAILURE_LIMIT`` failures on one account,
  ``NEONPRO_SIGNIN_IP_FAILURE_LIMIT`` from one address, within ``NEONPRO_SIGNIN_LOCKOUT_MINUTES``
  (which is also how long a lock-out lasts). A success clears the account's own failures,
  not its address's (one good password must not wipe a guessing run from a shared NAT).
* The answer to a locked-out client says so plainly: the sign-in page with the message
  (429), or JSON for API paths (429, ``Retry-After``).
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from typing import Any

from axes.attempts import get_cool_off_threshold
from axes.handlers.database import AxesDatabaseHandler
from axes.handlers.proxy import AxesProxyHandler
from axes.helpers import get_client_username
from axes.models import AccessAttempt
from django.conf import settings
from django.db.models import Sum
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from keys.crypto import sign, sign_all
from neonpro.audit.services import record_event
from neonpro.security.error_body import error_response
from neonpro.security.errors import is_api

USERNAME_LABEL = b"neonpro.accounts.username.v1"
LOCKED_MESSAGE = (
    "Too many failed sign-in attempts: signing in is locked for {minutes} minutes. "
    "Wait, or ask an administrator to unlock your account."
)


def _normalized(username: str) -> bytes:
    return unicodedata.normalize("NFKC", username).strip().casefold().encode()


def _hex(key_id: int, tag: bytes) -> str:
    return (key_id.to_bytes(4, "big") + tag[:16]).hex()


def keyed_username(username: str) -> str:
    """40 hex characters that stand for ``username`` (under the active audit key)."""
    return _hex(*sign(_normalized(username), purpose="audit", label=USERNAME_LABEL))


def keyed_usernames(username: str) -> list[str]:
    """``keyed_username`` under every audit key still kept (what older rows carry)."""
    return [_hex(key_id, tag) for key_id, tag in sign_all(_normalized(username), purpose="audit", label=USERNAME_LABEL)]


def keyed_username_of(request: HttpRequest | None, credentials: dict[str, Any] | None) -> str | None:
    """AXES_USERNAME_CALLABLE: the keyed username of an attempt (None when none was typed)."""
    field = settings.AXES_USERNAME_FORM_FIELD
    username = (credentials or {}).get(field)
    if username is None and request is not None:
        username = request.POST.get(field)
    return keyed_username(str(username)) if username else None


def client_str(username: Any, ip_address: Any, user_agent: Any, path_info: Any, request: Any) -> str:
    """AXES_CLIENT_STR_CALLABLE: what axes' own log lines say about a client — never a username."""
    return f"{{ip_address: {ip_address!r}, path_info: {path_info!r}}}"


def minutes() -> int:
    return int(settings.NEONPRO_SIGNIN_LOCKOUT_MINUTES)


def failure_limit(request: Any = None, credentials: Any = None) -> int:
    """AXES_FAILURE_LIMIT: the account's limit (the address's is scaled to it: LockoutHandler)."""
    return int(settings.NEONPRO_SIGNIN_FAILURE_LIMIT)


def cool_off(request: Any = None) -> dt.timedelta:
    """AXES_COOLOFF_TIME: how long failures count, and a lock-out lasts."""
    return dt.timedelta(minutes=minutes())


def locked_message() -> str:
    return LOCKED_MESSAGE.format(minutes=minutes())


def lockout_response(request: HttpRequest, original_response: Any = None, credentials: Any = None) -> HttpResponse:
    """AXES_LOCKOUT_CALLABLE: the answer to a locked-out client."""
    retry = str(minutes() * 60)
    if is_api(request) or "application/json" in request.META.get("CONTENT_TYPE", ""):
        response: HttpResponse = error_response("locked_out", locked_message(), 429)
    else:
        from neonpro.accounts.signin_views import locked_out_page

        response = render(request, "registration/login.html", locked_out_page(request), status=429)
    response["Retry-After"] = retry
    return response


def is_locked(request: HttpRequest, username: str) -> bool:
    """Whether sign-in is locked for this account or this client's address."""
    return not AxesProxyHandler.is_allowed(request, {settings.AXES_USERNAME_FORM_FIELD: username})


def refuse_locked(request: HttpRequest, username: str) -> None:
    """Flag the request so AxesMiddleware answers with the lock-out response."""
    request.axes_locked_out = True  # type: ignore[attr-defined]
    request.axes_credentials = {settings.AXES_USERNAME_FORM_FIELD: username}  # type: ignore[attr-defined]


class LockoutHandler(AxesDatabaseHandler):
    """Axes' database handler with a limit per parameter and success clearing only the account."""

    def get_failures(self, request: HttpRequest, credentials: dict[str, Any] | None = None) -> int:
        recent = AccessAttempt.objects.filter(attempt_time__gte=get_cool_off_threshold(request))
        username = get_client_username(request, credentials)
        by_account = _failures(recent.filter(username=username)) if username else 0
        by_address = _failures(recent.filter(ip_address=request.axes_ip_address))  # type: ignore[attr-defined]
        account_limit = failure_limit()
        address_limit = int(settings.NEONPRO_SIGNIN_IP_FAILURE_LIMIT)
        # On the account's scale (AXES_FAILURE_LIMIT is the account limit): the address is
        # locked once it reaches its own limit.
        return max(by_account, by_address * account_limit // address_limit)

    def reset_user_attempts(self, request: HttpRequest, credentials: dict[str, Any] | None = None) -> int:
        username = get_client_username(request, credentials)
        return int(AccessAttempt.objects.filter(username=username).delete()[0]) if username else 0


def _failures(attempts: Any) -> int:
    return int(attempts.aggregate(total=Sum("failures_since_start"))["total"] or 0)


def unlock(*, username: str | None = None, ip_address: str | None = None) -> int:
    """An administrator's unlock: forget the failures of an account and/or an address
    (audited as ``signin.unlocked``); returns how many attempt records went."""
    if not username and not ip_address:
        raise ValueError("name an account (username) or an address to unlock")
    removed = 0
    details: dict[str, Any] = {}
    if username:
        names = keyed_usernames(username)
        removed += int(AccessAttempt.objects.filter(username__in=names).delete()[0])
        details["username_hash"] = names[0]
    if ip_address:
        removed += int(AccessAttempt.objects.filter(ip_address=ip_address).delete()[0])
        details["address"] = True
    record_event("signin.unlocked", details={**details, "attempts": removed})
    return removed
