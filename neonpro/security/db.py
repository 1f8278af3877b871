"""Database roles: an owner that runs migrations, an application role that cannot bypass RLS.

Guarantees: ``create_roles`` (run once by a DBA, as a superuser) makes both roles
NOSUPERUSER NOBYPASSRLS; ``grant_runtime_privileges`` (run by the owner; also after every
``migrate``) gives the application role DML on every table — except the audit log, where it
may only INSERT and SELECT — and EXECUTE on the signed identity's two functions, and nothing
else (not the identity signing keys' schema): no DDL, no TRUNCATE (which ignores RLS), no
ownership. ``runtime_role_problems`` is what the start-up check refuses to serve with, and it
follows role membership: a role that can ``SET ROLE`` to the owner is refused like the owner.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import connections
from psycopg import sql

from neonpro.security import identity

PHI_TABLES = (
    "patients_patient",
    "patients_careteammembership",
    "patients_emergencyaccessgrant",
    "records_medicalrecord",
    "records_appointment",
    "records_medicalrecordrevision",
    "patients_agentaccess",
)
# Tables with encrypted fields that hold no patient data, so no patient-scoped RLS: each says
# why. A secret here is read before anyone is signed in (the code step of sign-in), like the
# password hash in accounts_user; encryption at rest still keeps it out of a dump.
ENCRYPTED_NOT_PHI_TABLES = {
    "accounts_totpsecret": "an authenticator's shared secret (the second factor), checked at sign-in",
}
APPEND_ONLY_TABLES = ("audit_auditevent", "django_admin_log", "accounts_accountchange")
# PostgreSQL's predefined roles that reach past row-level security or the server's own guard.
DANGEROUS_PREDEFINED_ROLES = {
    "pg_execute_server_program": "runs programs on the database server (COPY ... PROGRAM): a way to superuser",
    "pg_read_server_files": "reads any file the server can, the database files included",
    "pg_write_server_files": "writes any file the server can",
    "pg_read_all_data": "reads every table, past row-level security",
    "pg_write_all_data": "writes every table, past row-level security",
    "pg_monitor": "sees every session's statements in pg_stat_activity",
    "pg_read_all_stats": "sees every session's statements in pg_stat_activity",
    "pg_signal_backend": "can cancel or terminate other sessions",
}


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
        if identity.installed(cursor):
            statements += [sql.SQL(statement) for statement in identity.grant_statements(app_role())]
        for statement in statements:
            cursor.execute(statement)
    return True


def runtime_role_problems(using: str = "default") -> list[str]:
    """Why the current database role must not serve requests (empty when it may)."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        return []
    with connection.cursor() as cursor:
        return role_problems(cursor)


def role_problems(cursor: Any) -> list[str]:
    """What lets the connected role get around row-level security or the audit log's protection.

    Checked through role membership too — ``pg_has_role(..., 'MEMBER')``: direct or indirect,
    whatever INHERIT says, since a member of the owner role can ``SET ROLE`` to it:
    superuser, BYPASSRLS, CREATEROLE (it could grant itself the owner's role), REPLICATION (the
    raw WAL), owning any table, sequence, view, function or the schema of the application
    (owners can switch RLS off and drop triggers), and any privilege beyond the DML it is
    granted — TRUNCATE (which ignores RLS), REFERENCES, TRIGGER, UPDATE or DELETE on the audit
    log, CREATE in the schema or the database.
    """
    problems: list[str] = []
    cursor.execute("SELECT current_user")
    user = cursor.fetchone()[0]
    cursor.execute(
        "SELECT rolname, rolsuper, rolbypassrls, rolcreaterole, rolreplication FROM pg_roles r "
        "WHERE pg_has_role(current_user, r.oid, 'MEMBER') ORDER BY rolname <> current_user, rolname"
    )
    rows = cursor.fetchall()
    for name, *_ in rows:
        if name in DANGEROUS_PREDEFINED_ROLES:
            problems.append(f"database role {user} can act as {name}, which {DANGEROUS_PREDEFINED_ROLES[name]}")
    for name, superuser, bypass, createrole, replication in rows:
        who = f"database role {user}" + ("" if name == user else f" can become {name} (role membership), which")
        for flag, what in (
            (superuser, "is a superuser, which bypasses row-level security"),
            (bypass, "has BYPASSRLS"),
            (createrole, "has CREATEROLE, so it can grant itself the owner's role"),
            (replication, "has REPLICATION, so it can read the raw write-ahead log"),
        ):
            if flag:
                problems.append(f"{who} {what}" if name == user else f"{who} {what.split(', ')[0]}")
    cursor.execute(
        "SELECT c.relname, pg_get_userbyid(c.relowner) FROM pg_class c "
        "WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') "
        "AND pg_has_role(current_user, c.relowner, 'MEMBER') ORDER BY c.relname"
    )
    owned = cursor.fetchall()
    if owned:
        names = [name for name, _ in owned]
        phi = [name for name in names if name in PHI_TABLES]
        listed = phi or names
        shown = ", ".join(listed[:6]) + (", ..." if len(listed) > 6 else "")
        owners = sorted({owner for _, owner in owned})
        subject = (
            f"database role {user}"
            if owners == [user]
            else f"database role {user} can act as {', '.join(owners)}, which"
        )
        problems.append(
            f"{subject} owns {'PHI tables' if phi else 'tables'} ({shown}; {len(owned)} relations in all), "
            "so it can switch RLS off and drop the audit log's triggers"
        )
    cursor.execute(
        "SELECT p.proname FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace "
        "AND pg_has_role(current_user, p.proowner, 'MEMBER') ORDER BY p.proname"
    )
    functions = [row[0] for row in cursor.fetchall()]
    if functions:
        problems.append(f"database role {user} owns functions ({', '.join(functions[:6])}), so it can rewrite them")
    cursor.execute(
        "SELECT pg_has_role(current_user, n.nspowner, 'MEMBER'), has_schema_privilege(current_user, n.oid, 'CREATE'), "
        "has_database_privilege(current_user, current_database(), 'CREATE') "
        "FROM pg_namespace n WHERE n.nspname = 'public'"
    )
    owns_schema, create_in_schema, create_in_database = cursor.fetchone()
    if owns_schema:
        problems.append(f"database role {user} owns schema public, so it can drop or replace any object in it")
    elif create_in_schema:
        problems.append(f"database role {user} may CREATE objects in schema public")
    if create_in_database:
        problems.append(f"database role {user} may CREATE schemas in the database")
    cursor.execute(
        "SELECT has_schema_privilege(current_user, n.oid, 'USAGE') OR pg_has_role(current_user, n.nspowner, 'MEMBER') "
        "FROM pg_namespace n WHERE n.nspname = %s",
        [identity.SCHEMA],
    )
    row = cursor.fetchone()
    if row and row[0]:
        problems.append(
            f"database role {user} may use schema {identity.SCHEMA}, where the identity signing keys are: "
            "it could read them and sign any identity"
        )
    extra = []
    cursor.execute(
        "SELECT c.relname, has_table_privilege(current_user, c.oid, 'TRUNCATE'), "
        "has_table_privilege(current_user, c.oid, 'REFERENCES'), has_table_privilege(current_user, c.oid, 'TRIGGER'), "
        "has_table_privilege(current_user, c.oid, 'UPDATE'), has_table_privilege(current_user, c.oid, 'DELETE') "
        "FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p') ORDER BY c.relname"
    )
    for table, truncate, references, trigger, update, delete in cursor.fetchall():
        granted = [
            name for name, flag in (("TRUNCATE", truncate), ("REFERENCES", references), ("TRIGGER", trigger)) if flag
        ]
        if table in APPEND_ONLY_TABLES:
            granted += [name for name, flag in (("UPDATE", update), ("DELETE", delete)) if flag]
        if granted:
            extra.append(f"{'/'.join(granted)} on {table}")
    if extra:
        shown = "; ".join(extra[:6]) + ("; ..." if len(extra) > 6 else "")
        problems.append(f"database role {user} has privileges beyond the DML it needs: {shown}")
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
