"""The agents' clauses (patients/records 0008): the database and the ORM give an agent exactly
its patient set, and in each table only what its scopes name.

* A property test: random small worlds (care-team memberships around today, agents with
  explicit patients and supervising clinicians, appointments in every status) and agents with
  several scope sets. For each, the rows the application role reads, and may lock for update,
  on every PHI table are what the rules say (``_expected``: docs/agents.md, "What an agent
  reaches") — and the ORM's filter (``visible_to``, what SQLite gets) gives the same rows.
* Writes, as raw SQL: what the services refuse an agent, the database refuses too.
* The policy text: ``rls.agent_policies()`` is what the migrations installed (applied again in
  a rolled-back transaction as the owner and compared as PostgreSQL deparses it), and the
  migrations replace and restore exactly those policies.
"""

from __future__ import annotations

import importlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from django.db import DatabaseError, connection, transaction
from hypothesis import given, settings
from hypothesis import strategies as st

from neonpro.security import rls, scopes
from neonpro.security.context import ANONYMOUS, SYSTEM, Identity, acting_as, system_context
from neonpro.security.db import PHI_TABLES
from patients.models import AgentAccess, CareTeamMembership, EmergencyAccessGrant, Patient
from records.models import Appointment, MedicalRecord, MedicalRecordRevision
from tests.conftest import OWNER_ROLE, fuzz_budget

pytestmark = pytest.mark.django_db

CLINICIANS, PATIENTS, AGENTS = 2, 4, 2
STATUSES = ("requested", "confirmed", "cancelled", "completed", "no_show")
BLOB = b"\x01" * 40
TOKEN = b"\x01" * 60
READ_ALL = ("patients:read", "records:read", "appointments:read")
SCOPE_SETS = (
    scopes.SCOPES,
    READ_ALL,
    ("records:read", "records:write"),
    ("appointments:read", "appointments:write"),
    ("patients:read", "patients:write"),
    ("appointments:write",),  # never issued (write needs read), but the database must hold anyway
    (),
)
MODELS = {
    "patients_patient": Patient,
    "patients_careteammembership": CareTeamMembership,
    "patients_emergencyaccessgrant": EmergencyAccessGrant,
    "patients_agentaccess": AgentAccess,
    "records_medicalrecord": MedicalRecord,
    "records_appointment": Appointment,
    "records_medicalrecordrevision": MedicalRecordRevision,
}


@dataclass(frozen=True)
class World:
    memberships: tuple[tuple[int, int, int, int | None], ...]  # patient, clinician, start, end (days from today)
    explicit: tuple[tuple[int, int], ...]  # agent, patient
    teams: tuple[tuple[int, int], ...]  # agent, supervising clinician
    statuses: tuple[str, ...]  # one appointment per patient


day = st.integers(-2, 2)
worlds = st.builds(
    World,
    memberships=st.lists(
        st.tuples(st.integers(0, PATIENTS - 1), st.integers(0, CLINICIANS - 1), day, st.none() | day).filter(
            lambda m: m[3] is None or m[3] >= m[2]
        ),
        max_size=6,
        unique_by=lambda m: (m[0], m[1], m[2]),
    ).map(tuple),
    explicit=st.lists(st.tuples(st.integers(0, AGENTS - 1), st.integers(0, PATIENTS - 1)), max_size=4, unique=True).map(
        tuple
    ),
    teams=st.lists(st.tuples(st.integers(0, AGENTS - 1), st.integers(0, CLINICIANS - 1)), max_size=2, unique=True).map(
        tuple
    ),
    statuses=st.tuples(*[st.sampled_from(STATUSES)] * PATIENTS),
)


@dataclass
class Ids:
    clinicians: list[uuid.UUID]
    agents: list[uuid.UUID]
    patients: list[uuid.UUID]
    memberships: list[uuid.UUID]
    access: list[uuid.UUID]  # the explicit rows, then the team rows
    records: list[uuid.UUID]
    appointments: list[uuid.UUID]
    revisions: list[uuid.UUID]

    def rows(self) -> dict[str, list[uuid.UUID]]:
        return {
            "patients_patient": self.patients,
            "patients_careteammembership": self.memberships,
            "patients_emergencyaccessgrant": [],
            "patients_agentaccess": self.access,
            "records_medicalrecord": self.records,
            "records_appointment": self.appointments,
            "records_medicalrecordrevision": self.revisions,
        }


def _user(cursor: Any, user: uuid.UUID, role: str) -> None:
    cursor.execute(
        "INSERT INTO accounts_user (id, password, is_superuser, username, first_name, last_name, email, "
        "is_staff, is_active, date_joined, role, must_change_password) "
        "VALUES (%s, '!', false, %s, '', '', '', false, true, now(), %s, false)",
        [user, f"agent-fuzz-{user}", role],
    )


def _seed(world: World) -> Ids:
    ids = Ids(
        clinicians=[uuid.uuid4() for _ in range(CLINICIANS)],
        agents=[uuid.uuid4() for _ in range(AGENTS)],
        patients=[uuid.uuid4() for _ in range(PATIENTS)],
        memberships=[uuid.uuid4() for _ in world.memberships],
        access=[uuid.uuid4() for _ in world.explicit + world.teams],
        records=[uuid.uuid4() for _ in range(PATIENTS)],
        appointments=[uuid.uuid4() for _ in range(PATIENTS)],
        revisions=[uuid.uuid4() for _ in range(PATIENTS)],
    )
    with system_context("agent policy property test"), connection.cursor() as cursor:
        for user in ids.clinicians:
            _user(cursor, user, "clinician")
        for user in ids.agents:
            _user(cursor, user, "agent")
        for patient in ids.patients:
            cursor.execute(
                "INSERT INTO patients_patient (id, full_name, date_of_birth, ssn, mrn, email, phone, address, "
                "created_at, updated_at, active, contact_by_email, contact_by_sms, user_id) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, now(), now(), true, false, false, NULL)",
                [patient, BLOB, BLOB, TOKEN, TOKEN, TOKEN, TOKEN, BLOB],
            )
        for row, (p, c, start, end) in zip(ids.memberships, world.memberships, strict=True):
            cursor.execute(
                "INSERT INTO patients_careteammembership (id, starts_on, ends_on, created_at, clinician_id, "
                "patient_id) VALUES (%s, current_date + %s::integer, current_date + %s::integer, now(), %s, %s)",
                [row, start, end, ids.clinicians[c], ids.patients[p]],
            )
        links = [(a, ids.patients[p], None) for a, p in world.explicit] + [
            (a, None, ids.clinicians[c]) for a, c in world.teams
        ]
        for row, (a, patient, clinician) in zip(ids.access, links, strict=True):
            cursor.execute(
                "INSERT INTO patients_agentaccess (id, agent_id, patient_id, care_team_of_id, created_at) "
                "VALUES (%s, %s, %s, %s, now())",
                [row, ids.agents[a], patient, clinician],
            )
        for i, patient in enumerate(ids.patients):
            cursor.execute(
                "INSERT INTO records_medicalrecord (id, record_date, diagnosis, treatment_plan, medications, notes, "
                "created_at, updated_at, patient_id, provider_id, row_version) "
                "VALUES (%s, current_date, %s, %s, %s, %s, now(), now(), %s, %s, 1)",
                [ids.records[i], BLOB, BLOB, BLOB, BLOB, patient, ids.clinicians[0]],
            )
            cursor.execute(
                "INSERT INTO records_medicalrecordrevision (id, record_id, patient_id, provider_id, record_version, "
                "action, changed_by, changed_at, changed_fields, record_date, diagnosis, treatment_plan, medications, "
                "notes, row_version) VALUES (%s, %s, %s, %s, 1, 'create', %s, now(), '[]', current_date, %s, %s, %s, "
                "%s, 1)",
                [ids.revisions[i], ids.records[i], patient, ids.clinicians[0], ids.clinicians[0], *[BLOB] * 4],
            )
            cursor.execute(
                "INSERT INTO records_appointment (id, scheduled_at, duration_minutes, status, reason, notes, "
                "created_at, updated_at, patient_id, provider_id, row_version) "
                "VALUES (%s, now(), 30, %s, %s, %s, now(), now(), %s, %s, 1)",
                [ids.appointments[i], world.statuses[i], BLOB, BLOB, patient, ids.clinicians[0]],
            )
    return ids


def agent(ids: Ids, a: int, granted: tuple[str, ...]) -> Identity:
    return Identity(user_id=ids.agents[a], role="agent", scopes=tuple(map(scopes.claim, granted)))


def _expected(world: World, a: int, granted: tuple[str, ...]) -> dict[str, tuple[set[int], set[int]]]:
    """Per table: (indexes of the rows agent ``a`` reads, of those it may lock for update)."""
    clinicians = {c for owner, c in world.teams if owner == a}
    team = {p for p, c, start, end in world.memberships if c in clinicians and start <= 0 and (end is None or end >= 0)}
    reach = {p for owner, p in world.explicit if owner == a} | team
    links = [owner for owner, _ in world.explicit] + [owner for owner, _ in world.teams]

    def on(*needed: str) -> set[int]:
        return reach if set(needed) <= set(granted) else set()

    open_appointments = {p for p in on("appointments:read", "appointments:write") if world.statuses[p] in STATUSES[:2]}
    return {
        "patients_patient": (on("patients:read"), on("patients:read", "patients:write")),
        "patients_careteammembership": ({i for i, m in enumerate(world.memberships) if m[1] in clinicians}, set()),
        "patients_emergencyaccessgrant": (set(), set()),
        "patients_agentaccess": ({i for i, owner in enumerate(links) if owner == a}, set()),
        "records_medicalrecord": (on("records:read"), set()),
        "records_appointment": (on("appointments:read"), open_appointments),
        "records_medicalrecordrevision": (on("records:read"), set()),
    }


def _seen(identity: Identity, table: str, rows: list[uuid.UUID]) -> tuple[set[int], set[int]]:
    index = {row: i for i, row in enumerate(rows)}
    with acting_as(identity), connection.cursor() as cursor:
        cursor.execute(f"SELECT id FROM {table}")
        readable = {index[row[0]] for row in cursor.fetchall() if row[0] in index}
        cursor.execute(f"SELECT id FROM {table} FOR UPDATE")
        lockable = {index[row[0]] for row in cursor.fetchall() if row[0] in index}
    return readable, lockable


def _orm(identity: Identity, table: str, rows: list[uuid.UUID]) -> set[int]:
    """The ORM's rule alone: ``visible_to`` evaluated with the database showing everything."""
    index = {row: i for i, row in enumerate(rows)}
    with system_context("the ORM's filter alone"):
        found = MODELS[table].objects.visible_to(identity).values_list("id", flat=True)
        return {index[row] for row in found if row in index}


@settings(max_examples=fuzz_budget(12))
@given(world=worlds)
def test_an_agent_reads_and_may_update_exactly_its_set_in_the_tables_its_scopes_name(world: World) -> None:
    with transaction.atomic():
        ids = _seed(world)
        rows = ids.rows()
        for a in range(AGENTS):
            for granted in SCOPE_SETS:
                identity, expected = agent(ids, a, granted), _expected(world, a, granted)
                for table in PHI_TABLES:
                    assert _seen(identity, table, rows[table]) == expected[table], (a, granted, table, world)
                    assert _orm(identity, table, rows[table]) == expected[table][0], ("ORM", a, granted, table)
        transaction.set_rollback(True)


def test_the_agent_access_rows_are_the_systems_and_the_administrators_and_nobody_elses() -> None:
    world = World(memberships=((0, 0, -1, None),), explicit=((0, 1),), teams=((1, 0),), statuses=STATUSES[:PATIENTS])
    with transaction.atomic():
        ids = _seed(world)
        every = set(range(len(ids.access)))
        for identity, readable, lockable in (
            (SYSTEM, every, every),
            (Identity(user_id=uuid.uuid4(), role="admin"), every, set()),
            (Identity(user_id=ids.clinicians[0], role="clinician"), set(), set()),
            (Identity(user_id=uuid.uuid4(), role="patient", patient_id=ids.patients[1]), set(), set()),
            (ANONYMOUS, set(), set()),
        ):
            assert _seen(identity, "patients_agentaccess", ids.access) == (readable, lockable), identity.role
            assert _orm(identity, "patients_agentaccess", ids.access) == readable, identity.role
        # Another agent's rows are not the agent's: and neither reaches the other's set.
        with acting_as(agent(ids, 1, READ_ALL)), connection.cursor() as cursor:
            cursor.execute("SELECT id FROM patients_patient")
            assert {row[0] for row in cursor.fetchall()} == {ids.patients[0]}, "agent 1: its clinician's team only"
        # A clinician with an agent working for them sees their own team, nothing more.
        with acting_as(Identity(user_id=ids.clinicians[0], role="clinician")), connection.cursor() as cursor:
            cursor.execute("SELECT id FROM patients_patient")
            assert {row[0] for row in cursor.fetchall()} == {ids.patients[0]}
        transaction.set_rollback(True)


def _refused(sql: str, params: list[Any]) -> bool:
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, params)
    except DatabaseError:
        return True
    return False


def _count(sql: str, params: list[Any]) -> int:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)
        count = cursor.rowcount
        transaction.set_rollback(True)
    return count


INSERT_RECORD = (
    "INSERT INTO records_medicalrecord (id, record_date, diagnosis, treatment_plan, medications, notes, created_at, "
    "updated_at, patient_id, provider_id, row_version) VALUES (%s, current_date, %s, %s, %s, %s, now(), now(), %s, "
    "%s, 1)"
)
INSERT_REVISION = (
    "INSERT INTO records_medicalrecordrevision (id, record_id, patient_id, provider_id, record_version, action, "
    "changed_by, changed_at, changed_fields, record_date, diagnosis, treatment_plan, medications, notes, row_version) "
    "VALUES (gen_random_uuid(), %s, %s, %s, 2, 'create', %s, now(), '[]', current_date, %s, %s, %s, %s, 1)"
)
INSERT_APPOINTMENT = (
    "INSERT INTO records_appointment (id, scheduled_at, duration_minutes, status, reason, notes, created_at, "
    "updated_at, patient_id, provider_id, row_version) VALUES (gen_random_uuid(), now(), 30, %s, %s, %s, now(), "
    "now(), %s, %s, 1)"
)


@pytest.fixture
def seeded() -> Iterator[Ids]:
    # Agent 0: patient 0 explicitly and clinician 0's team (patient 1); patients 2 and 3 are outside.
    world = World(
        memberships=((1, 0, -1, None), (2, 1, -1, None)),
        explicit=((0, 0),),
        teams=((0, 0),),
        statuses=("requested", "confirmed", "completed", "requested"),
    )
    with transaction.atomic():
        yield _seed(world)
        transaction.set_rollback(True)


def test_an_agent_adds_records_only_as_their_provider_for_its_patients_with_records_write(seeded: Ids) -> None:
    ids, blobs = seeded, [BLOB] * 4
    writer, reader = agent(ids, 0, ("records:read", "records:write")), agent(ids, 0, ("records:read",))
    with acting_as(writer):
        for patient in ids.patients[:2]:  # explicit, and through the clinician's team
            assert not _refused(INSERT_RECORD, [uuid.uuid4(), *blobs, patient, ids.agents[0]])
        assert _refused(INSERT_RECORD, [uuid.uuid4(), *blobs, ids.patients[2], ids.agents[0]]), "outside its set"
        assert _refused(INSERT_RECORD, [uuid.uuid4(), *blobs, ids.patients[0], ids.clinicians[0]]), "as someone else"
        assert _count("UPDATE records_medicalrecord SET record_date = record_date", []) == 0, "agents never amend"
        assert _count("DELETE FROM records_medicalrecord", []) == 0
        # The first revision of its own record, by itself only.
        own, other = [ids.records[0], ids.patients[0], ids.clinicians[0]], [ids.records[2], ids.patients[2]]
        assert not _refused(INSERT_REVISION, [*own, ids.agents[0], *blobs])
        assert _refused(INSERT_REVISION, [*own, ids.clinicians[0], *blobs]), "in someone else's name"
        assert _refused(INSERT_REVISION, [*other, ids.clinicians[0], ids.agents[0], *blobs]), "outside its set"
    with acting_as(reader):
        assert _refused(INSERT_RECORD, [uuid.uuid4(), *blobs, ids.patients[0], ids.agents[0]]), "records:read only"
        assert _refused(INSERT_REVISION, [ids.records[0], ids.patients[0], ids.clinicians[0], ids.agents[0], *blobs])


def test_an_agent_requests_and_cancels_appointments_of_its_patients_with_appointments_write(seeded: Ids) -> None:
    ids = seeded
    writer = agent(ids, 0, ("appointments:read", "appointments:write"))
    with acting_as(writer):
        assert not _refused(INSERT_APPOINTMENT, ["requested", BLOB, BLOB, ids.patients[1], ids.clinicians[0]])
        assert _refused(INSERT_APPOINTMENT, ["confirmed", BLOB, BLOB, ids.patients[1], ids.clinicians[0]])
        assert _refused(INSERT_APPOINTMENT, ["requested", BLOB, BLOB, ids.patients[3], ids.clinicians[0]])
        cancel = "UPDATE records_appointment SET status = %s WHERE id = %s"
        assert _count(cancel, ["cancelled", ids.appointments[1]]) == 1, "an open one"
        assert _count(cancel, ["cancelled", ids.appointments[3]]) == 0, "outside its set"
        assert _count(cancel, ["cancelled", ids.appointments[2]]) == 0, "patient 2 is not its patient"
        assert _refused(cancel, ["confirmed", ids.appointments[0]]), "an agent never confirms"
        assert _count("DELETE FROM records_appointment", []) == 0
    with acting_as(agent(ids, 0, ("appointments:read",))):
        assert _refused(INSERT_APPOINTMENT, ["requested", BLOB, BLOB, ids.patients[1], ids.clinicians[0]])
        assert _count("UPDATE records_appointment SET status = 'cancelled'", []) == 0


def test_an_agent_updates_its_patients_with_patients_write_and_never_registers_or_grants(seeded: Ids) -> None:
    ids = seeded
    update = "UPDATE patients_patient SET contact_by_sms = true"
    with acting_as(agent(ids, 0, ("patients:read", "patients:write"))):
        assert _count(update, []) == 2
        assert _refused(
            "INSERT INTO patients_patient (id, full_name, date_of_birth, mrn, created_at, updated_at, active, "
            "contact_by_email, contact_by_sms) VALUES (gen_random_uuid(), %s, %s, %s, now(), now(), true, false, "
            "false)",
            [BLOB, BLOB, TOKEN],
        )
        assert _refused(
            "INSERT INTO patients_agentaccess (id, agent_id, patient_id, created_at) "
            "VALUES (gen_random_uuid(), %s, %s, now())",
            [ids.agents[0], ids.patients[3]],
        ), "an agent never widens its own set"
        assert _count("DELETE FROM patients_agentaccess", []) == 0
        assert _count("UPDATE patients_agentaccess SET patient_id = patient_id", []) == 0
        assert _count("UPDATE patients_careteammembership SET ends_on = NULL", []) == 0
    with acting_as(agent(ids, 0, READ_ALL)):
        assert _count(update, []) == 0, "without patients:write"


def _deparsed(cursor: Any, tables: tuple[str, ...]) -> dict[tuple[str, str], tuple[str | None, str | None]]:
    cursor.execute(
        "SELECT c.relname, p.polname, pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid) "
        "FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid WHERE c.relname = ANY(%s)",
        [list(tables)],
    )
    return {(table, name): (using, check) for table, name, using, check in cursor.fetchall()}


def test_the_installed_policies_are_agent_policies_as_postgresql_reads_them() -> None:
    """``agent_policies()`` applied again (as the owner, rolled back) deparses to what is installed:
    the Python that builds the policies and the migrations that installed them agree."""
    policies = rls.agent_policies()
    tables = tuple(policies)
    assert set(tables) == set(PHI_TABLES)
    settings_dict = connection.settings_dict
    with (
        psycopg.connect(
            host=settings_dict["HOST"] or "127.0.0.1",
            port=settings_dict["PORT"] or 5432,
            user=OWNER_ROLE,
            dbname=settings_dict["NAME"],
        ) as conn,
        conn.cursor() as cursor,
    ):
        installed = _deparsed(cursor, tables)
        assert len(installed) == 4 * len(tables)
        for table in tables:
            for statement in rls.policy_statements(table, policies[table]):
                cursor.execute(statement)
        rebuilt = _deparsed(cursor, tables)
        conn.rollback()
    assert rebuilt == installed


def test_the_migrations_replace_the_planner_policies_with_the_agent_ones_and_restore_them() -> None:
    agents, planner = rls.agent_policies(), rls.planner_policies()
    patients = importlib.import_module("patients.migrations.0008_agent_access").Migration
    (protect,) = [op for op in patients.operations if isinstance(op, rls.ProtectTable)]
    assert (protect.table, protect.policies) == (rls.AGENT_ACCESS_TABLE, agents[rls.AGENT_ACCESS_TABLE])
    records = importlib.import_module("records.migrations.0008_agent_rls").Migration
    for migration, tables in ((patients, rls.PATIENTS_TABLES), (records, rls.RECORDS_TABLES)):
        (swap,) = [op for op in migration.operations if isinstance(op, rls.ReplacePolicies)]
        assert swap.sql == [s for t in tables for s in rls.policy_statements(t, agents[t])]
        assert swap.reverse_sql == [s for t in tables for s in rls.policy_statements(t, planner[t])]
    for table in rls.PATIENTS_TABLES + rls.RECORDS_TABLES:
        # What an agent gets is added to every policy; nobody else's clause changes (the planner test).
        for command in rls.COMMANDS:
            assert (agents[table][command] == planner[table][command]) == (
                "agent" not in str(agents[table][command])
            ), (table, command)


def test_an_agent_scope_outside_the_vocabulary_cannot_be_put_in_a_policy() -> None:
    assert "'records.read' = ANY" in rls.PlannerSQL.agent("records.read")
    with pytest.raises(ValueError, match="unknown scope 'records:read'"):
        rls.PlannerSQL.agent("records:read")
    with pytest.raises(ValueError, match="unknown scope"):
        rls.PlannerSQL.agent("x' OR true OR '")


def test_replace_policies_recreates_the_forward_policies_and_reverses_to_the_backward_ones() -> None:
    forwards = {"t1": {"select": ("a", None)}, "t2": {"insert": (None, "b")}}
    backwards = {"t1": {"select": ("c", None)}, "t2": {"insert": (None, "d")}}

    swap = rls.ReplacePolicies(("t1", "t2"), forwards, backwards)

    assert swap.sql == rls.policy_statements("t1", forwards["t1"]) + rls.policy_statements("t2", forwards["t2"])
    assert swap.reverse_sql == rls.policy_statements("t1", backwards["t1"]) + rls.policy_statements(
        "t2", backwards["t2"]
    )
    assert swap.atomic is True
