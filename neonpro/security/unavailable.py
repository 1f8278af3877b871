"""Infrastructure failures answer ``503`` with ``Retry-After``, never a 500 or a hang.

A database that is down, restarting, out of connections, or that cancelled a statement at
``statement_timeout`` / ``lock_timeout`` (``NEONPRO_DB_*_TIMEOUT_MS``), a connection pool with
no connection free within ``NEONPRO_DB_POOL_TIMEOUT``, Redis gone, or a key provider that
does not answer: none is the client's fault nor a bug, and each passes. The answer says so
(``503``, ``Retry-After``, a JSON body under ``/api/``) so that clients back off instead of
hammering, and the transaction is rolled back — nothing is half-written, nothing reported
failed was committed.
"""

from __future__ import annotations

import logging

from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse

from neonpro.security.error_body import error_body

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 2
ENCRYPTION_UNAVAILABLE = "the encryption service is unavailable"
SIGNIN_BUSY = "sign-in is busy (too many at once)"
# SQLSTATEs of PostgreSQL errors that are conditions of the service, not of the request.
TRANSIENT_SQLSTATES = {
    "57014": "a statement ran past its time limit",  # query_canceled (statement_timeout)
    "55P03": "a lock was not available in time",  # lock_not_available (lock_timeout)
    "40001": "a concurrent transaction conflicted",  # serialization_failure
    "40P01": "a deadlock was broken",  # deadlock_detected
    "53300": "the database has no connection free",  # too_many_connections
    "57P01": "the database is restarting",  # admin_shutdown
    "57P02": "the database is restarting",  # crash_shutdown
    "57P03": "the database is starting",  # cannot_connect_now
    "25P03": "a transaction idled past its time limit",  # idle_in_transaction_session_timeout
}


def _sqlstate(exc: BaseException) -> str | None:
    cause = exc.__cause__ if isinstance(exc, DatabaseError) and exc.__cause__ is not None else exc
    return getattr(cause, "sqlstate", None)


def infrastructure_reason(exc: BaseException | None) -> str | None:
    """Why ``exc`` is a service condition (a short phrase, no data), or None if it is not one."""
    if exc is None:
        return None
    from keys.exceptions import ProviderError

    if isinstance(exc, ProviderError):
        return ENCRYPTION_UNAVAILABLE
    from neonpro.accounts.hashing import SignInBusyError

    if isinstance(exc, SignInBusyError):
        return SIGNIN_BUSY
    try:
        from psycopg_pool import PoolTimeout
    except ImportError:  # pragma: no cover - a pinned dependency
        PoolTimeout = ()  # type: ignore[assignment,misc]  # noqa: N806
    if isinstance(exc, PoolTimeout) or isinstance(exc.__cause__, PoolTimeout):
        return "no database connection was free in time"
    try:
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError
    except ImportError:  # pragma: no cover - a pinned dependency
        RedisConnectionError = RedisTimeoutError = ()  # type: ignore[assignment,misc]  # noqa: N806
    if isinstance(exc, RedisConnectionError | RedisTimeoutError):
        return "the cache is unavailable"
    state = _sqlstate(exc)
    if state in TRANSIENT_SQLSTATES:
        return TRANSIENT_SQLSTATES[state]
    if isinstance(exc, InterfaceError):
        return "the database connection was lost"
    if isinstance(exc, OperationalError) and state is None:
        # No SQLSTATE: the server was never reached, or the connection broke mid-way.
        return "the database is unreachable"
    if isinstance(exc, OperationalError) and state and state[:2] in ("08", "53", "57", "58"):
        return "the database is unavailable"
    return None


def unavailable_response(request: HttpRequest, reason: str) -> HttpResponse:
    """The 503: JSON for the API, a short page for people; never cached."""
    logger.error("service unavailable: %s (%s %s)", reason, request.method, request.path)
    detail = f"Service temporarily unavailable: {reason}. Try again shortly."
    if reason == ENCRYPTION_UNAVAILABLE:  # the API's own wording for it (neonpro/security/api.py)
        detail = "Encryption service unavailable; try again shortly."
    response: HttpResponse
    if request.path.startswith("/api/"):
        response = JsonResponse(error_body("service_unavailable", detail), status=503)
    else:
        page = f"<!doctype html><title>Unavailable</title><h1>Temporarily unavailable</h1><p>{detail}</p>"
        response = HttpResponse(page, status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    response["Cache-Control"] = "no-store"
    return response


class QuietUnavailable(logging.Filter):
    """On ``django.request``: a 503 for a service condition is one line, not a traceback per
    request (an outage would otherwise write thousands); ``service unavailable: <reason>``
    above says why."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "status_code", None) == 503 and record.exc_info:
            if infrastructure_reason(record.exc_info[1]) is not None:
                record.exc_info, record.exc_text = None, None
        return True
