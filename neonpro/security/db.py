"""Database roles: an owner that runs migrations, an application role that cannot bypass RLS.

Guarantees: ``create_roles`` (run once by a DBA, as a superuser) makes both roles
NOSUPERUSER NOBYPASSRLS; ``grant_runtime_privileges`` (run by the owner; also after every
``migrate``) gives the application role DML on every table — except the audit log, where it
may only INSERT and SELECT — and nothing else: no DDL, no TRUNCATE (which ignores RLS), no
ownership. ``runtime_role_problems`` is what the start-up check refuses to serve with.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import connections
from psycopg import sql

PHI_TABLES = (
    "patients_patient",
    "patients_careteammembership",
    "patients_emergencyaccessgrant",
    "records_medicalrecord",
    "records_appointment",
)
APPEND_ONLY_TABLES = ("audit_auditevent",)


def app_role() -> str:
    return str(getattr(settings, "NEONPRO_DB_APP_ROLE", "neonpro_app"))


def owner_role() -> str:
    return str(getattr(settings, "NEONPRO_DB_OWNER_ROLE", "neonpro_owner"))


def create_roles(cursor: Any, *, owner: str, app: str, database: str, app_password: str | None = None) -> None:
    """Create (or normalise) the two roles and let the owner create objects in ``public``."""
    for role, extra in ((owner, "CREATEDB"), (app, "NOCREATEDB")):
        cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role])
        verb = "ALTER" if cursor.fetchone() else "CREATE"
        cursor.execute(
            sql.SQL("{} ROLE {} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEROLE NOREPLICATION " + extra).format(
                sql.SQL(verb), sql.Identifier(role)
            )
        )
    if app_password:
        cursor.execute(sql.SQL("ALTER ROLE {} PASSWORD %s").format(sql.Identifier(app)), [app_password])
    cursor.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(database), sql.Identifier(app)))
    cursor.execute(sql.SQL("GRANT ALL ON DATABASE {} TO {}").format(sql.Identifier(database), sql.Identifier(owner)))
    cursor.execute(sql.SQL("GRANT USAGE, CREATE ON SCHEMA public TO {}").format(sql.Identifier(owner)))


def role_exists(cursor: Any, role: str) -> bool:
    cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role])
    return cursor.fetchone() is not None


def grant_runtime_privileges(using: str = "default") -> bool:
    """Grant the application role what it needs on every table; False if it does not exist."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        return False
    app = sql.Identifier(app_role())
    with connection.cursor() as cursor:
        if not role_exists(cursor, app_role()):
            return False
        statements = [
            sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(app),
            sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {}").format(app),
            sql.SQL("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {}").format(app),
            sql.SQL("REVOKE TRUNCATE, REFERENCES, TRIGGER ON ALL TABLES IN SCHEMA public FROM {}").format(app),
        ]
        for table in APPEND_ONLY_TABLES:
            statements.append(
                sql.SQL("REVOKE UPDATE, DELETE, TRUNCATE ON {} FROM {}").format(sql.Identifier(table), app)
            )
        for statement in statements:
            cursor.execute(statement)
    return True


def runtime_role_problems(using: str = "default") -> list[str]:
    """Why the current database role must not serve requests (empty when it may)."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        return []
    problems = []
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_user, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
        user, superuser, bypass = cursor.fetchone()
        if superuser:
            problems.append(f"database role {user} is a superuser, which bypasses row-level security")
        if bypass:
            problems.append(f"database role {user} has BYPASSRLS")
        cursor.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner "
            "WHERE r.rolname = current_user AND c.relname = ANY(%s)",
            [list(PHI_TABLES)],
        )
        owned = sorted(row[0] for row in cursor.fetchall())
        if owned:
            problems.append(f"database role {user} owns PHI tables ({', '.join(owned)}), so it can switch RLS off")
    return problems


def rls_status(using: str = "default") -> dict[str, tuple[bool, bool, int]]:
    """For each PHI table: (RLS enabled, RLS forced, number of policies)."""
    with connections[using].cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity, "
            "(SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid) "
            "FROM pg_class c WHERE c.relname = ANY(%s)",
            [list(PHI_TABLES)],
        )
        return {name: (enabled, forced, count) for name, enabled, forced, count in cursor.fetchall()}
