"""``manage.py db roles|grant|identity-keys|check``: database roles for row-level security."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError, connection, transaction

from neonpro.audit.operator import add_operator_arguments, operator_from_options
from neonpro.db import limits
from neonpro.security import db


class Command(BaseCommand):
    help = "Create the owner and application database roles, grant privileges, check RLS."
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        roles = sub.add_parser("roles", help="Create both roles (run as a superuser, once).")
        roles.add_argument("--owner", default=None, help="Owner role (default NEONPRO_DB_OWNER_ROLE).")
        roles.add_argument("--app", default=None, help="Application role (default NEONPRO_DB_APP_ROLE).")
        roles.add_argument("--app-password-file", type=Path, default=None)
        sub.add_parser("grant", help="Grant the application role its privileges (run as the owner).")
        sub.add_parser(
            "identity-keys",
            help="Install the identity signing keys for row-level security (run as the owner, after an identity-key "
            "rotation or destruction; migrate does it too).",
        )
        sub.add_parser("check", help="Show RLS status of PHI tables and whether this role may serve.")
        add_operator_arguments(parser)

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        if connection.vendor != "postgresql":
            self._embedded(action)
            return
        with operator_from_options(options):
            getattr(self, f"handle_{action.replace('-', '_')}")(**options)

    def _record(self, action: str, **details: Any) -> None:
        """Role and privilege changes are audited — once the audit log exists (`db roles` may run first)."""
        from django.db import connections

        from neonpro.audit.models import AuditEvent
        from neonpro.audit.routers import audit_alias
        from neonpro.audit.services import record_event

        if AuditEvent._meta.db_table in connections[audit_alias()].introspection.table_names():
            record_event(action, resource_type="database.role", details=details)

    def _embedded(self, action: str) -> None:
        """The embedded mode (SQLite) has no roles and no row-level security: say what protects it instead."""
        explanation = (
            f"This installation runs on {connection.vendor} (the embedded mode of `make run`), which has no "
            "database roles and no row-level security. Access rules are applied by the ORM's scoped managers "
            "instead (the same rules the PostgreSQL policies enforce; the test suite checks that both agree), so "
            "the app still shows each person only their rows, but raw SQL against the file is not filtered. "
            "For production, point DATABASE_URL at PostgreSQL and run `manage.py db roles` (see docs/database.md)."
        )
        if action != "check":
            raise CommandError(f"`db {action}` needs PostgreSQL. {explanation}")
        self.stdout.write(explanation)

    def handle_roles(self, *, owner: str | None, app: str | None, app_password_file: Path | None, **_: Any) -> None:
        password = app_password_file.read_text().strip() if app_password_file else None
        owner, app = owner or db.owner_role(), app or db.app_role()
        database = connection.settings_dict["NAME"]
        role_limits = {name: int(settings.DB_SESSION_LIMITS[name]) for name in limits.ROLE_LIMITS}
        with connection.cursor() as cursor:
            db.create_roles(cursor, owner=owner, app=app, database=database, app_password=password)
            limits.set_role_limits(cursor, app=app, owner=owner, database=database, limits=role_limits)
        per_limit = {f"app_{name}_ms": value for name, value in role_limits.items()}
        self._record("db.roles", owner=owner, app=app, password_set=password is not None, **per_limit)
        shown = ", ".join(f"{name} {value} ms" for name, value in role_limits.items())
        self.stdout.write(
            f"Roles ready: owner {owner} (runs migrations), application {app} (serves requests; in {database}: "
            f"{shown}, enforced behind a pooler too)."
        )

    def handle_grant(self, **_: Any) -> None:
        if not db.grant_runtime_privileges():
            raise CommandError(f"role {db.app_role()} does not exist: run `manage.py db roles` as a superuser first")
        self._record("db.grant", app=db.app_role())
        self.stdout.write(f"Granted {db.app_role()} DML on all tables (audit log: INSERT and SELECT only).")

    def handle_identity_keys(self, **_: Any) -> None:
        from keys.exceptions import KeysError
        from neonpro.security import identity

        with transaction.atomic(), connection.cursor() as cursor:
            if not identity.installed(cursor):
                raise CommandError("the signed identity is not installed here: run `manage.py migrate` as the owner")
            try:
                installed = identity.install_identity_keys(cursor)
            except DatabaseError as error:
                raise CommandError(
                    f"cannot install the identity signing keys as {connection.settings_dict['USER'] or 'this role'}: "
                    "run this as the owner role (it alone may write them)"
                ) from error
            except KeysError as error:
                raise CommandError(f"cannot read the identity keys: {error}") from error
        self._record("db.identity_keys", key_ids=installed)
        self.stdout.write(f"Identity signing keys installed: {', '.join(map(str, installed))} (newest signs).")

    def handle_check(self, **_: Any) -> None:
        for table, (enabled, forced, count) in sorted(db.rls_status().items()):
            self.stdout.write(f"{table:<32} enabled={enabled} forced={forced} policies={count}")
        problems = db.runtime_role_problems()
        for problem in problems:
            self.stderr.write(f"FAIL  {problem}")
        if problems:
            raise CommandError("this role must not serve requests")
        self.stdout.write("This role may serve requests: row-level security applies to it.")
