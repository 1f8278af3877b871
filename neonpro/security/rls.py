"""PostgreSQL row-level security: the migration operation and the SQL building blocks.

Guarantees: every protected table gets ENABLE *and* FORCE ROW LEVEL SECURITY (so even its
owner is filtered) and one policy per command — SELECT (USING), INSERT (WITH CHECK), UPDATE
(USING and WITH CHECK), DELETE (USING). Identity settings are read through scalar
sub-selects, so each is evaluated once per statement, and an unset identity casts to NULL,
which matches no row. On other databases the operation does nothing (the ORM's scoped
managers filter there).

The current policies (``agent_policies()``, installed by patients/records 0008: the
planner-shaped ones of patients/records 0007 plus the agents' clauses) are shaped for the
planner: every branch of a ``USING`` clause is a comparison of an indexed column with a value
computed once per statement, so a scope-only query becomes index scans (a BitmapOr) instead of
a sequential scan with a filter; see ``PlannerSQL``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db import migrations
from django.db.migrations.operations import AddIndex, RemoveIndex

from neonpro.security import scopes


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
    """The first policies of every PHI table but the record history, reading the identity through ``ids``.

    The rules the first migrations installed (patients 0003; records 0002 and 0004, the latest
    appointment update rule), which security 0001 re-created on SIGNED. Historical: patients
    and records 0007 replace them with ``planner_policies()`` (same rules, planner-shaped) and
    restore these when reversed, so this must keep producing what it produced.
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


# The record history's first policies (records 0005), on SIGNED: a revision names the record's
# own patient, and a clinician records only their own edits.
HISTORY_READ_V1 = (
    f"{IS_SYSTEM} OR ({ROLE} = 'patient' AND patient_id = {PATIENT}) "
    f"OR ({ROLE} = 'clinician' AND (patient_id IN {CARE_TEAM} OR patient_id IN {GRANTED}))"
)
HISTORY_CREATE = (
    "patient_id = (SELECT r.patient_id FROM records_medicalrecord r WHERE r.id = record_id) AND ("  # noqa: S608
    f"{IS_SYSTEM} OR ({ROLE} = 'clinician' AND changed_by = {UID} AND patient_id IN {CARE_TEAM}))"
)


def history_policies_v1() -> Policies:
    """``records_medicalrecordrevision``'s policies as records 0005 installed them."""
    return {
        "select": (HISTORY_READ_V1, None),
        "insert": (None, HISTORY_CREATE),
        "update": (IS_SYSTEM, IS_SYSTEM),
        "delete": (None, None),
    }


_ZERO_UUID = "'00000000-0000-0000-0000-000000000000'::uuid"


def _claim(field: str) -> str:
    return f"neonpro_identity_claim('{field}')"


class PlannerSQL:
    """Policy expressions the planner can turn into index scans, on the signed identity.

    Three rules make a ``USING`` clause cheap to plan and to run:

    * **Every branch compares an indexed column with a value** (``id = ANY(<array>)``,
      ``user_id = <value>``, ``clinician_id = <value>``): ``A OR B OR C`` then becomes a
      BitmapOr of index scans. A branch without a column (``role = 'system'``) cannot be
      searched in an index and forces a sequential scan of the whole table, so the role goes
      *into the value*: ``clinician_id = (SELECT CASE WHEN role = 'clinician' THEN user_id END)``
      is NULL, i.e. no row, for any other role.
    * **Each value is a scalar sub-select** (an initplan): computed once per statement, as an
      index key or a parameter, never per row. The care team and the active grants are one
      array (``ARRAY(SELECT patient_id ... UNION ALL ...)``); an array of unknown length is
      estimated as 10 elements, so the estimate of a care-team query is about its real size
      instead of the fraction of the table a filter of sub-plans is guessed at.
    * **Everything (system, admin) is ``id >= CASE WHEN <hint> AND <verified role> THEN <lowest
      UUID> END``**: every row for those roles, none (``>= NULL``) for the others, and one
      index condition, so the bitmap of the whole ``OR`` is exact and the heap rows are not
      filtered again. The hint is whether the *unverified* token (or, for the owner, the plain
      ``neonpro.role`` setting) names one of the roles. The planner reads it while it plans
      (``current_setting`` is stable), so it knows that a clinician's statement gets no row
      from this branch and a system one many, and picks the plan for the identity at hand.
      The hint is only AND-ed with the verified claim, so a forged token cannot widen
      anything (at worst it makes its own statement slower); and whenever the verified claim
      names the role the hint does too (the claim is a field of that very token, or the
      owner's plain setting), so the branch is exactly the verified role check.
    """

    @staticmethod
    def role_in(*roles: str) -> str:
        """Whether the verified role is one of ``roles``: one boolean initplan."""
        listed = ", ".join(f"'{role}'" for role in roles)
        return f"(SELECT {_claim('role')} IN ({listed}))"

    @staticmethod
    def hint(*roles: str) -> str:
        """Whether the unverified token or the owner's plain setting names one of ``roles``."""
        listed = ", ".join(f"'{role}'" for role in roles)
        # Never NULL, so that the planner folds "<hint> AND <claim>" to false for the others.
        return (
            f"coalesce(split_part(current_setting('neonpro.identity', true), ':', 4) IN ({listed}) "
            f"OR current_setting('neonpro.role', true) IN ({listed}), false)"
        )

    @classmethod
    def everything(cls, *roles: str, column: str = "id") -> str:
        """Every row, for the verified ``roles``: a branch the planner can search, on ``column``
        (a NOT NULL UUID column that leads an index)."""
        return f"{column} >= CASE WHEN {cls.hint(*roles)} AND {cls.role_in(*roles)} THEN {_ZERO_UUID} END"

    @staticmethod
    def only(role: str, field: str) -> str:
        """The verified claim ``field`` (a UUID) when the verified role is ``role``, else NULL."""
        return f"(SELECT CASE WHEN {_claim('role')} = '{role}' THEN {_claim(field)}::uuid END)"

    @classmethod
    def patients(cls, *, grants: bool, own: bool, agent: str | None = None) -> str:
        """The patient ids the identity reaches, as one array computed once per statement.

        A clinician's active care team (and, with ``grants``, their active break-glass grants);
        with ``own``, a patient's own id; with ``agent`` (a scope in claim form), the patient
        set of an agent holding that scope (``agent_parts``). The rows come through those
        tables' own policies, as the first policies' ``IN (SELECT ...)`` did.
        """
        clinician = cls.only("clinician", "user_id")
        parts = [
            "SELECT m.patient_id FROM patients_careteammembership m "  # noqa: S608 - constant SQL
            f"WHERE m.clinician_id = {clinician} AND m.starts_on <= current_date "
            "AND (m.ends_on IS NULL OR m.ends_on >= current_date)"
        ]
        if grants:
            parts.append(
                "SELECT g.patient_id FROM patients_emergencyaccessgrant g "  # noqa: S608 - constant SQL
                f"WHERE g.clinician_id = {clinician} AND g.expires_at > now() AND g.ended_at IS NULL"
            )
        if own:
            parts.append(
                f"SELECT o.patient_id FROM (VALUES ({cls.only('patient', 'patient_id')})) o (patient_id) "  # noqa: S608
                "WHERE o.patient_id IS NOT NULL"
            )
        if agent is not None:
            parts += cls.agent_parts(agent)
        return f"(SELECT ARRAY({' UNION ALL '.join(parts)}))::uuid[]"

    @staticmethod
    def agent(scope: str | None = None) -> str:
        """The verified agent's user id — when it holds ``scope`` (claim form, ``records.read``),
        if one is named — else NULL: one initplan, like ``only``."""
        held = ""
        if scope is not None:
            if scope not in {scopes.claim(known) for known in scopes.SCOPES}:
                raise ValueError(f"unknown scope {scope!r}")
            held = f" AND '{scope}' = ANY (string_to_array({_claim('scopes')}, ' '))"
        return f"(SELECT CASE WHEN {_claim('role')} = 'agent'{held} THEN {_claim('user_id')}::uuid END)"

    @classmethod
    def agent_parts(cls, scope: str) -> list[str]:
        """The patient set of an agent holding ``scope``: its explicit patients and the active
        care team of each clinician it works for (``patients_agentaccess``, whose rows an agent
        reads for itself, and the memberships of its clinicians, which it reads too)."""
        agent = cls.agent(scope)
        return [
            "SELECT a.patient_id FROM patients_agentaccess a "  # noqa: S608 - constant SQL
            f"WHERE a.agent_id = {agent} AND a.patient_id IS NOT NULL",
            "SELECT m.patient_id FROM patients_agentaccess a "  # noqa: S608 - constant SQL
            "JOIN patients_careteammembership m ON m.clinician_id = a.care_team_of_id "
            f"WHERE a.agent_id = {agent} AND m.starts_on <= current_date "
            "AND (m.ends_on IS NULL OR m.ends_on >= current_date)",
        ]

    @classmethod
    def agent_patients(cls, scope: str) -> str:
        """Only the patient set of an agent holding ``scope``, as one array (empty for anyone else)."""
        return f"(SELECT ARRAY({' UNION ALL '.join(cls.agent_parts(scope))}))::uuid[]"

    @classmethod
    def supervisors(cls) -> str:
        """The clinicians whose care teams the verified agent works for, as one array."""
        return (
            "(SELECT ARRAY(SELECT a.care_team_of_id FROM patients_agentaccess a "  # noqa: S608 - constant SQL
            f"WHERE a.agent_id = {cls.agent()} AND a.care_team_of_id IS NOT NULL))::uuid[]"
        )


def planner_policies() -> dict[str, Policies]:
    """Every PHI table's policies as patients and records 0007 install them: the rules of
    ``phi_policies()`` and the record history's first ones, every ``USING`` clause shaped by
    ``PlannerSQL``.

    ``WITH CHECK`` clauses (checked on each written row, never searched) are the first ones.
    """
    p = PlannerSQL
    first = phi_policies(SIGNED)
    system = p.everything("system")
    readable = f"ANY ({p.patients(grants=True, own=True)})"
    care_team = f"ANY ({p.patients(grants=False, own=False)})"
    patient_read = f"{system} OR id = {readable} OR user_id = {p.only('patient', 'user_id')}"  # own row, or own account
    patient_write = f"{system} OR id = ANY ({p.patients(grants=False, own=True)})"
    # On clinician_id: the care-team and grant arrays then read the (clinician, ...) indexes alone.
    linked_read = (
        f"{p.everything('system', 'admin', column='clinician_id')} OR clinician_id = {p.only('clinician', 'user_id')} "
        f"OR patient_id = {p.only('patient', 'patient_id')}"
    )
    administered = p.everything("system", "admin", column="clinician_id")
    clinical_read = f"{system} OR patient_id = {readable}"
    clinical_write = f"{system} OR patient_id = {care_team}"
    own = p.only("patient", "patient_id")

    def keep_checks(table: str, using: dict[str, str]) -> Policies:
        return {command: (using.get(command, old[0]), old[1]) for command, old in first[table].items()}

    return {
        "patients_patient": keep_checks("patients_patient", {"select": patient_read, "update": patient_write}),
        "patients_careteammembership": keep_checks(
            "patients_careteammembership", {"select": linked_read, "update": administered, "delete": administered}
        ),
        "patients_emergencyaccessgrant": keep_checks("patients_emergencyaccessgrant", {"select": linked_read}),
        "records_medicalrecord": keep_checks(
            "records_medicalrecord", {"select": clinical_read, "update": clinical_write}
        ),
        "records_appointment": keep_checks(
            "records_appointment",
            {
                "select": clinical_read,
                "update": f"{clinical_write} OR (patient_id = {own} AND status IN ('requested', 'confirmed'))",
            },
        ),
        "records_medicalrecordrevision": {**history_policies_v1(), "select": (clinical_read, None)},
    }


PATIENTS_TABLES = ("patients_patient", "patients_careteammembership", "patients_emergencyaccessgrant")
RECORDS_TABLES = ("records_medicalrecord", "records_appointment", "records_medicalrecordrevision")
AGENT_ACCESS_TABLE = "patients_agentaccess"


def agent_policies() -> dict[str, Policies]:
    """Every PHI table's policies as patients and records 0008 install them: ``planner_policies()``
    with the agents' clauses, and the agent-access table's own.

    An agent reaches only the patients of its set (``PlannerSQL.agent_parts``), and in each
    table only what its scopes name: it reads a table with ``<resource>:read``; with
    ``patients:write`` it updates its patients, with ``records:write`` it adds records (as
    their provider; it never amends one) and their first revision, with ``appointments:write``
    it requests appointments (status ``requested``) and cancels open ones — what a patient may
    do for themself, since an agent is no clinician. It never deletes, never registers a
    patient, never sees a break-glass grant. Its own access rows and its clinicians'
    care-team memberships it reads (the arrays are built from them).
    """
    p = PlannerSQL
    planner, first = planner_policies(), phi_policies(SIGNED)
    system = p.everything("system")

    def readable(scope: str) -> str:
        return f"ANY ({p.patients(grants=True, own=True, agent=scope)})"

    def agent_writes(scope: str, condition: str = "", column: str = "patient_id") -> str:
        return f" OR ({ROLE} = 'agent' AND {column} = ANY ({p.agent_patients(scope)}){condition})"

    patient_update = f"{system} OR id = ANY ({p.patients(grants=False, own=True, agent='patients.write')})"
    patient_check = first["patients_patient"]["update"][1] + agent_writes("patients.write", column="id")
    careteam_read = f"{planner['patients_careteammembership']['select'][0]} OR clinician_id = ANY ({p.supervisors()})"
    revision_create = (
        "patient_id = (SELECT r.patient_id FROM records_medicalrecord r WHERE r.id = record_id) AND ("  # noqa: S608
        f"{IS_SYSTEM} OR ({ROLE} = 'clinician' AND changed_by = {UID} AND patient_id IN {CARE_TEAM})"
        f"{agent_writes('records.write', f' AND changed_by = {UID}')})"
    )
    appointments = planner["records_appointment"]
    open_by_agent = (
        f" OR (patient_id = ANY ({p.agent_patients('appointments.write')}) AND status IN ('requested', 'confirmed'))"
    )
    everything = p.everything("system", "admin", column="agent_id")
    system_only = p.everything("system", column="agent_id")
    return {
        "patients_patient": {
            **planner["patients_patient"],
            "select": (
                f"{system} OR id = {readable('patients.read')} OR user_id = {p.only('patient', 'user_id')}",
                None,
            ),
            "update": (patient_update, patient_check),
        },
        "patients_careteammembership": {**planner["patients_careteammembership"], "select": (careteam_read, None)},
        "patients_emergencyaccessgrant": planner["patients_emergencyaccessgrant"],
        AGENT_ACCESS_TABLE: {
            "select": (f"{everything} OR agent_id = {p.only('agent', 'user_id')}", None),
            "insert": (None, IS_SYSTEM),
            "update": (system_only, IS_SYSTEM),
            "delete": (system_only, None),
        },
        "records_medicalrecord": {
            **planner["records_medicalrecord"],
            "select": (f"{system} OR patient_id = {readable('records.read')}", None),
            "insert": (
                None,
                first["records_medicalrecord"]["insert"][1]
                + agent_writes("records.write", f" AND provider_id = {UID}"),
            ),
        },
        "records_appointment": {
            "select": (f"{system} OR patient_id = {readable('appointments.read')}", None),
            "insert": (
                None,
                appointments["insert"][1] + agent_writes("appointments.write", " AND status = 'requested'"),
            ),
            "update": (
                appointments["update"][0] + open_by_agent,
                appointments["update"][1]
                + agent_writes("appointments.write", " AND status IN ('requested', 'cancelled')"),
            ),
            "delete": appointments["delete"],
        },
        "records_medicalrecordrevision": {
            **planner["records_medicalrecordrevision"],
            "select": (f"{system} OR patient_id = {readable('records.read')}", None),
            "insert": (None, revision_create),
        },
    }


def first_policies() -> dict[str, Policies]:
    """What ``planner_policies()`` replaced, per table: the state before patients/records 0007."""
    return {**phi_policies(SIGNED), "records_medicalrecordrevision": history_policies_v1()}


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


class ReplacePolicies(PostgresOnlySQL):
    """Re-create the policies of ``tables`` from ``forwards`` (reversed: from ``backwards``) in one
    transaction, also inside a non-atomic migration: no statement ever sees a table with only
    some of its policies (PostgreSQL only)."""

    atomic = True

    def __init__(self, tables: tuple[str, ...], forwards: dict[str, Policies], backwards: dict[str, Policies]) -> None:
        super().__init__(
            [statement for table in tables for statement in policy_statements(table, forwards[table])],
            [statement for table in tables for statement in policy_statements(table, backwards[table])],
        )


class AddIndexOnline(AddIndexConcurrently):
    """``CREATE INDEX CONCURRENTLY`` on PostgreSQL (writes to a live table go on while it builds;
    the migration must be ``atomic = False``), a plain ``CREATE INDEX`` elsewhere (SQLite)."""

    def database_forwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        if schema_editor.connection.vendor == "postgresql":
            super().database_forwards(app_label, schema_editor, from_state, to_state)
        else:
            AddIndex.database_forwards(self, app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        if schema_editor.connection.vendor == "postgresql":
            super().database_backwards(app_label, schema_editor, from_state, to_state)
        else:
            AddIndex.database_backwards(self, app_label, schema_editor, from_state, to_state)


class RemoveIndexOnline(RemoveIndexConcurrently):
    """``DROP INDEX CONCURRENTLY`` on PostgreSQL, a plain ``DROP INDEX`` elsewhere."""

    def database_forwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        if schema_editor.connection.vendor == "postgresql":
            super().database_forwards(app_label, schema_editor, from_state, to_state)
        else:
            RemoveIndex.database_forwards(self, app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        if schema_editor.connection.vendor == "postgresql":
            super().database_backwards(app_label, schema_editor, from_state, to_state)
        else:
            RemoveIndex.database_backwards(self, app_label, schema_editor, from_state, to_state)
