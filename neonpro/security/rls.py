"""PostgreSQL row-level security: the migration operation and the SQL building blocks.

Guarantees: every protected table gets ENABLE *and* FORCE ROW LEVEL SECURITY (so even its
owner is filtered) and one policy per command — SELECT (USING), INSERT (WITH CHECK), UPDATE
(USING and WITH CHECK), DELETE (USING). Identity settings are read through scalar
sub-selects, so each is evaluated once per statement, and an unset identity casts to NULL,
which matches no row. On other databases the operation does nothing (the ORM's scoped
managers filter there).
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

UID = "(SELECT nullif(current_setting('neonpro.user_id', true), '')::uuid)"
ROLE = "(SELECT nullif(current_setting('neonpro.role', true), ''))"
PATIENT = "(SELECT nullif(current_setting('neonpro.patient_id', true), '')::uuid)"
IS_SYSTEM = f"{ROLE} = 'system'"
CARE_TEAM = (
    "(SELECT m.patient_id FROM patients_careteammembership m "  # noqa: S608 - constant SQL
    f"WHERE m.clinician_id = {UID} AND m.starts_on <= current_date "
    "AND (m.ends_on IS NULL OR m.ends_on >= current_date))"
)
GRANTED = (
    "(SELECT g.patient_id FROM patients_emergencyaccessgrant g "  # noqa: S608 - constant SQL
    f"WHERE g.clinician_id = {UID} AND g.expires_at > now() AND g.ended_at IS NULL)"
)
COMMANDS = ("select", "insert", "update", "delete")


def policy_statements(table: str, policies: dict[str, tuple[str | None, str | None]]) -> list[str]:
    """SQL that (re)creates ``table``'s policies; ``policies[cmd] = (using, with_check)``."""
    statements = [
        f'ALTER TABLE "{table}" ENABLE ROW LEVEL SECURITY',
        f'ALTER TABLE "{table}" FORCE ROW LEVEL SECURITY',
    ]
    for command in COMMANDS:
        using, check = policies.get(command, ("false", "false"))
        name = f"{table}_{command}"
        statements.append(f'DROP POLICY IF EXISTS "{name}" ON "{table}"')
        sql = f'CREATE POLICY "{name}" ON "{table}" AS PERMISSIVE FOR {command.upper()}'
        if command in ("select", "update", "delete"):
            sql += f" USING ({using or 'false'})"
        if command in ("insert", "update"):
            sql += f" WITH CHECK ({check or 'false'})"
        statements.append(sql)
    return statements


def reverse_statements(table: str) -> list[str]:
    statements = [f'DROP POLICY IF EXISTS "{table}_{command}" ON "{table}"' for command in COMMANDS]
    statements += [
        f'ALTER TABLE "{table}" NO FORCE ROW LEVEL SECURITY',
        f'ALTER TABLE "{table}" DISABLE ROW LEVEL SECURITY',
    ]
    return statements


class ProtectTable(migrations.operations.base.Operation):
    """Enable and force RLS on a table and install its per-command policies (PostgreSQL only)."""

    reversible = True
    reduces_to_sql = True

    def __init__(self, table: str, policies: dict[str, tuple[str | None, str | None]]) -> None:
        self.table = table
        self.policies = policies

    def deconstruct(self) -> tuple[str, list[Any], dict[str, Any]]:
        return (self.__class__.__qualname__, [], {"table": self.table, "policies": self.policies})

    def state_forwards(self, app_label: str, state: Any) -> None:
        pass

    def database_forwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        if schema_editor.connection.vendor == "postgresql":
            for statement in policy_statements(self.table, self.policies):
                schema_editor.execute(statement)

    def database_backwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        if schema_editor.connection.vendor == "postgresql":
            for statement in reverse_statements(self.table):
                schema_editor.execute(statement)

    def describe(self) -> str:
        return f"Enable and force row-level security on {self.table}"

    @property
    def migration_name_fragment(self) -> str:
        return f"rls_{self.table}"


class PostgresOnlySQL(migrations.RunSQL):
    """RunSQL that is skipped on databases other than PostgreSQL."""

    def database_forwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        if schema_editor.connection.vendor == "postgresql":
            super().database_forwards(app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        if schema_editor.connection.vendor == "postgresql":
            super().database_backwards(app_label, schema_editor, from_state, to_state)
