"""PostgreSQL row-level security: the migration operation and the SQL building blocks.

Guarantees: every protected table gets ENABLE *and* FORCE ROW LEVEL SECURITY (so even its
owner is filtered) and one policy per command — SELECT (USING), INSERT (WITH CHECK), UPDATE
(USING and WITH CHECK), DELETE (USING). Identity settings are read through scalar
sub-selects, so each is evaluated once per statement, and an unset identity casts to NULL,
which matches no row. On other databases the operation does nothing (the ORM's scoped
managers filter there).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import migrations


@dataclass(frozen=True)
class IdentitySQL:
    """How policies read the acting identity: one SQL scalar sub-select per field."""

    uid: str
    role: str
    patient: str

    @property
    def is_system(self) -> str:
        return f"{self.role} = 'system'"

    @property
    def care_team(self) -> str:
        return (
            "(SELECT m.patient_id FROM patients_careteammembership m "  # noqa: S608 - constant SQL
            f"WHERE m.clinician_id = {self.uid} AND m.starts_on <= current_date "
            "AND (m.ends_on IS NULL OR m.ends_on >= current_date))"
        )

    @property
    def granted(self) -> str:
        return (
            "(SELECT g.patient_id FROM patients_emergencyaccessgrant g "  # noqa: S608 - constant SQL
            f"WHERE g.clinician_id = {self.uid} AND g.expires_at > now() AND g.ended_at IS NULL)"
        )


# The identity the policies read: only what neonpro_identity_claim() returns — the fields of
# a token the app signed for this very transaction, verified with a key the application role
# cannot read (neonpro/security/identity.py). A forged, replayed or missing token is NULL.
SIGNED = IdentitySQL(
    uid="(SELECT neonpro_identity_claim('user_id')::uuid)",
    role="(SELECT neonpro_identity_claim('role'))",
    patient="(SELECT neonpro_identity_claim('patient_id')::uuid)",
)
# What the first policies read (patients 0003, records 0002 and 0004): plain settings the
# application role could set itself. Only those historical migrations use it; security 0001
# replaces every policy built on it.
UNSIGNED = IdentitySQL(
    uid="(SELECT nullif(current_setting('neonpro.user_id', true), '')::uuid)",
    role="(SELECT nullif(current_setting('neonpro.role', true), ''))",
    patient="(SELECT nullif(current_setting('neonpro.patient_id', true), '')::uuid)",
)
UID, ROLE, PATIENT = SIGNED.uid, SIGNED.role, SIGNED.patient
IS_SYSTEM, CARE_TEAM, GRANTED = SIGNED.is_system, SIGNED.care_team, SIGNED.granted
COMMANDS = ("select", "insert", "update", "delete")


Policies = dict[str, tuple[str | None, str | None]]


def phi_policies(ids: IdentitySQL = SIGNED) -> dict[str, Policies]:
    """Every PHI table's current policies, reading the identity through ``ids``.

    The same rules the first migrations installed (patients 0003; records 0002 and 0004, the
    latest appointment update rule): security 0001 re-creates them all on SIGNED.
    """
    system, role, uid, patient = ids.is_system, ids.role, ids.uid, ids.patient
    care_team, granted = ids.care_team, ids.granted
    patient_read = (
        f"{system} OR ({role} = 'patient' AND (id = {patient} OR user_id = {uid})) "
        f"OR ({role} = 'clinician' AND (id IN {care_team} OR id IN {granted}))"
    )
    patient_write = (
        f"{system} OR ({role} = 'patient' AND id = {patient}) OR ({role} = 'clinician' AND id IN {care_team})"
    )
    linked_read = (
        f"{role} IN ('system', 'admin') OR ({role} = 'clinician' AND clinician_id = {uid}) "
        f"OR ({role} = 'patient' AND patient_id = {patient})"
    )
    administered = f"{role} IN ('system', 'admin')"
    grant_create = (
        f"{system} OR ({role} = 'clinician' AND clinician_id = {uid} AND ended_at IS NULL "
        "AND granted_at BETWEEN now() - interval '1 minute' AND now() + interval '1 minute' "
        "AND expires_at <= granted_at + interval '24 hours')"
    )
    clinical_read = (
        f"{system} OR ({role} = 'patient' AND patient_id = {patient}) "
        f"OR ({role} = 'clinician' AND (patient_id IN {care_team} OR patient_id IN {granted}))"
    )
    clinical_write = f"{system} OR ({role} = 'clinician' AND patient_id IN {care_team})"
    own_patient = f"({role} = 'patient' AND patient_id = {patient}"
    return {
        "patients_patient": {
            "select": (patient_read, None),
            "insert": (None, system),
            "update": (patient_write, patient_write),
            "delete": (system, None),
        },
        "patients_careteammembership": {
            "select": (linked_read, None),
            "insert": (None, administered),
            "update": (administered, administered),
            "delete": (administered, None),
        },
        "patients_emergencyaccessgrant": {
            "select": (linked_read, None),
            "insert": (None, grant_create),
            "update": (system, system),
            "delete": (system, None),
        },
        "records_medicalrecord": {
            "select": (clinical_read, None),
            "insert": (
                None,
                f"{system} OR ({role} = 'clinician' AND provider_id = {uid} AND patient_id IN {care_team})",
            ),
            "update": (clinical_write, clinical_write),
            "delete": (system, None),
        },
        "records_appointment": {
            "select": (clinical_read, None),
            "insert": (None, f"{clinical_write} OR {own_patient} AND status = 'requested')"),
            "update": (
                f"{clinical_write} OR {own_patient} AND status IN ('requested', 'confirmed'))",
                f"{clinical_write} OR {own_patient} AND status IN ('requested', 'cancelled'))",
            ),
            "delete": (system, None),
        },
    }


def policy_statements(table: str, policies: Policies) -> list[str]:
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
