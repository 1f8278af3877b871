"""A throw-away PostgreSQL database for a benchmark, measured the way production runs.

``prepare(name)`` (before ``django.setup()``) creates the database when missing, normalises
the ``neonpro_owner`` and ``neonpro_app`` roles with the project's own ``create_roles`` and
points Django at it as the owner, so ``migrate`` and any DDL run as the owner. After that,
``use_app_role()`` grants the application role its privileges and switches every Django
connection to it: what the benchmark then times runs as ``neonpro_app`` (NOSUPERUSER
NOBYPASSRLS, owns nothing), with row-level security in force. ``owner()`` is a separate
autocommit connection as the owner, for the untimed housekeeping (TRUNCATE, DDL) the
application role may not do.

``DATABASE_URL`` names a superuser (trust or password auth), as for the test suite.
"""

from __future__ import annotations

import base64
import hashlib
import os
import sys
from typing import Any
from urllib.parse import unquote, urlsplit

import psycopg
from psycopg import sql

OWNER_ROLE = "neonpro_owner"
APP_ROLE = "neonpro_app"
SERVER: dict[str, Any] = {}


def master_key(label: str) -> str:
    """A fixed master key per benchmark: the data is synthetic, and a rerun can read what an
    earlier run wrote."""
    return base64.b64encode(hashlib.sha256(f"neonpro {label} master key".encode()).digest()).decode()


def ssn_of(i: int) -> str:
    """The ``i``-th synthetic SSN of a seeded benchmark (unique, in the 900 range no one is issued)."""
    return f"{900 + i // 10_000:03d}-{(i // 100) % 100 + 1:02d}-{i % 10_000:04d}"


def conninfo(user: str, dbname: str) -> dict[str, Any]:
    info = {"host": SERVER["host"], "port": SERVER["port"], "user": user, "dbname": dbname}
    if user == SERVER["user"] and SERVER["password"]:
        info["password"] = SERVER["password"]
    return info


def prepare(dbname: str, *, script: str, drop: bool = False) -> None:
    url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/neonpro")
    if not url.startswith("postgres"):
        sys.exit(f"{script} runs on PostgreSQL: set DATABASE_URL=postgres://... (a superuser)")
    parts = urlsplit(url)
    SERVER.update(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 5432,
        user=unquote(parts.username or "postgres"),
        password=unquote(parts.password or ""),
        dbname=dbname,
    )
    from neonpro.security.db import create_roles

    with psycopg.connect(**conninfo(SERVER["user"], "postgres"), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [dbname]).fetchone()
        if exists and drop:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(dbname)))
            exists = None
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    with psycopg.connect(**conninfo(SERVER["user"], dbname), autocommit=True) as conn, conn.cursor() as cursor:
        create_roles(cursor, owner=OWNER_ROLE, app=APP_ROLE, database=dbname)
    os.environ["DATABASE_URL"] = f"postgres://{OWNER_ROLE}@{SERVER['host']}:{SERVER['port']}/{dbname}"
    os.environ["NEONPRO_DB_APP_ROLE"] = APP_ROLE
    os.environ["NEONPRO_DB_OWNER_ROLE"] = OWNER_ROLE
    os.environ["DJANGO_DEBUG"] = "False"  # DEBUG keeps every query (and its parameters) in memory
    # use_app_role() switches connections from the owner to the app role: a pool would keep
    # the owner's. Servers a benchmark starts (bench/load.py) pool as production does.
    os.environ["NEONPRO_DB_POOL"] = "False"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "neonpro.settings")
    os.environ.pop("REDIS_URL", None)


def use_app_role() -> None:
    """Grant the application role its privileges (as the owner), then serve every Django
    connection as that role."""
    from django.conf import settings
    from django.db import connections

    from neonpro.security.db import grant_runtime_privileges

    assert grant_runtime_privileges("default"), f"role {APP_ROLE} is missing"
    for alias in settings.DATABASES:
        connections[alias].close()
        connections[alias].settings_dict["USER"] = APP_ROLE
        connections[alias].settings_dict["PASSWORD"] = ""
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT current_user, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
        user, superuser, bypass = cursor.fetchone()
    assert (user, superuser, bypass) == (APP_ROLE, False, False), "the benchmark must run as the application role"


def owner() -> psycopg.Connection[Any]:
    """An autocommit connection as the owner, for untimed housekeeping."""
    return psycopg.connect(**conninfo(OWNER_ROLE, SERVER["dbname"]), autocommit=True)


# -- The second factor: clinicians sign in with a code (neonpro/accounts/mfa.py) ------------
def totp_key(username: str) -> bytes:
    """A fixed authenticator secret per synthetic account (the accounts are throw-away)."""
    return hashlib.sha256(f"neonpro bench totp {username}".encode()).digest()[:20]


def enrol_totp(users: list[Any]) -> None:
    """A confirmed authenticator for each user (as the system identity, inside the caller's seeding)."""
    from neonpro.accounts.mfa_models import TOTPDevice

    for user in users:
        TOTPDevice.create_with_key(user=user, key=totp_key(user.username), confirmed=True)


def totp_now(username: str) -> str:
    """The code the user's authenticator app shows now."""
    from django_otp.oath import totp

    return f"{totp(totp_key(username)):06d}"
