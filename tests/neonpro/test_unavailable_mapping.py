"""Which failures are service conditions (503) and which are bugs (500), exception by exception."""

from __future__ import annotations

import logging
import sys

import psycopg
import pytest
from django.db import DatabaseError, IntegrityError, InterfaceError, OperationalError
from django.test import RequestFactory
from psycopg_pool import PoolTimeout
from redis.exceptions import ConnectionError as RedisConnectionError

from keys.exceptions import ProviderError
from neonpro.security.unavailable import QuietUnavailable, infrastructure_reason, unavailable_response


def _wrapped(django_class: type[Exception], cause: BaseException) -> Exception:
    exc = django_class(str(cause))
    exc.__cause__ = cause
    return exc


def _coded(sqlstate: str) -> Exception:
    """A real psycopg error of that SQLSTATE, as the server would raise it."""
    return psycopg.errors.lookup(sqlstate)("x")


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (None, None),
        (ProviderError("down", permanent=False), "the encryption service is unavailable"),
        (PoolTimeout("no connection"), "no database connection was free in time"),
        (_wrapped(OperationalError, PoolTimeout("x")), "no database connection was free in time"),
        (RedisConnectionError("gone"), "the cache is unavailable"),
        (_wrapped(OperationalError, _coded("55P03")), "a lock was not available in time"),
        (_wrapped(OperationalError, _coded("53300")), "the database has no connection free"),
        (_wrapped(OperationalError, _coded("08006")), "the database is unavailable"),
        (_wrapped(OperationalError, _coded("55000")), None),
        (InterfaceError("connection already closed"), "the database connection was lost"),
        (OperationalError("could not connect"), "the database is unreachable"),
        (IntegrityError("duplicate key"), None),
        (DatabaseError("something else"), None),
        (ValueError("a bug"), None),
    ],
)
def test_service_conditions_are_told_from_bugs(exc: BaseException | None, reason: str | None) -> None:
    assert infrastructure_reason(exc) == reason


def test_the_page_for_people_is_html_and_the_api_gets_json() -> None:
    factory = RequestFactory()

    page = unavailable_response(factory.get("/records/"), "the database is unreachable")
    api = unavailable_response(factory.get("/api/v1/patients/"), "the encryption service is unavailable")

    assert page.status_code == 503 and b"the database is unreachable" in page.content and page["Retry-After"] == "2"
    assert api.status_code == 503 and api["Content-Type"] == "application/json"
    assert b"Encryption service unavailable" in api.content and api["Cache-Control"] == "no-store"


def test_a_503_for_a_service_condition_logs_one_line_not_a_traceback() -> None:
    def record(exc: BaseException, status: int) -> logging.LogRecord:
        try:
            raise exc
        except BaseException:
            entry = logging.LogRecord("django.request", logging.ERROR, __file__, 1, "x", (), sys.exc_info())
        entry.status_code = status
        return entry

    quiet, bug, other = (
        record(OperationalError("gone"), 503),
        record(ValueError("bug"), 503),
        record(OperationalError("gone"), 500),
    )

    assert all(QuietUnavailable().filter(entry) for entry in (quiet, bug, other))
    assert quiet.exc_info is None and bug.exc_info is not None and other.exc_info is not None
