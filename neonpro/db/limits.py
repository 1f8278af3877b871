"""Server-side time limits, and the few places that lift them for their own long statements.

Every connection of the app starts with ``statement_timeout``, ``lock_timeout`` and
``idle_in_transaction_session_timeout`` (settings ``NEONPRO_DB_*_TIMEOUT_MS``, sent as startup
options; on the role itself, in the app's database, behind a transaction-mode pooler:
``set_role_limits``, which ``manage.py db roles`` runs). Migrations and the
re-encryption job run statements that may take longer than a request may: ``long_statements``
raises ``statement_timeout`` for one transaction (``SET LOCAL``), and migrations lift it for
their session — ``lock_timeout`` stays, so a migration waiting for a table lock gives up
rather than queueing every request behind it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.db import connections
from psycopg import sql


def _postgresql(using: str) -> bool:
    return bool(connections[using].vendor == "postgresql")


@contextmanager
def long_statements(using: str = "default", *, milliseconds: int | None = None) -> Iterator[None]:
    """Inside a transaction: its statements may run ``milliseconds`` (default
    ``NEONPRO_DB_LONG_STATEMENT_TIMEOUT_MS``, 10 minutes) instead of a request's limit."""
    if milliseconds is None:
        milliseconds = int(getattr(settings, "NEONPRO_DB_LONG_STATEMENT_TIMEOUT_MS", 600_000))
    if _postgresql(using):
        with connections[using].cursor() as cursor:
            cursor.execute("SELECT set_config('statement_timeout', %s, true)", [f"{int(milliseconds)}ms"])
    yield


def lift_for_migrations(*, using: str = "default", **kwargs: Any) -> None:
    """``pre_migrate``: a migration's statements (an index build, a data move) are not timed."""
    if _postgresql(using):
        with connections[using].cursor() as cursor:
            cursor.execute("SET statement_timeout = 0")


# The limits a role carries in one database (``ALTER ROLE ... IN DATABASE ... SET``): what a
# transaction-mode pooler, which drops startup options, still enforces.
ROLE_LIMITS = ("statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout")


def set_role_limits(cursor: Any, *, app: str, owner: str, database: str, limits: Mapping[str, int]) -> None:
    """Give the application role ``limits`` (milliseconds; 0 = none) in ``database`` only, and
    the owner none there: migrations may take longer than a request, and keep what they set.

    Roles are cluster-wide, shared by every database of the server: the settings are scoped to
    ``database`` (``IN DATABASE``), never set on the role everywhere. Needs a superuser (or
    CREATEROLE), as ``db roles`` does.
    """
    for name in ROLE_LIMITS:
        cursor.execute(
            sql.SQL("ALTER ROLE {} IN DATABASE {} SET {} = {}").format(
                sql.Identifier(app),
                sql.Identifier(database),
                sql.Identifier(name),
                sql.Literal(f"{int(limits[name])}ms"),
            )
        )
        cursor.execute(
            sql.SQL("ALTER ROLE {} IN DATABASE {} RESET {}").format(
                sql.Identifier(owner), sql.Identifier(database), sql.Identifier(name)
            )
        )
