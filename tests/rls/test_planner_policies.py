"""The planner-shaped policies (patients/records 0007) keep the first policies' rules exactly.

A property test: random small worlds (care-team memberships that started or end around today,
grants that expired, expire soon or were ended, patients with and without portal accounts,
appointments in every status), and every kind of identity — each clinician, patients with a
matching, a mismatched or no patient id, an admin, an agent, the system, nobody. For each, the
rows the database lets the application role read, and lock for update, on every PHI table are
exactly what the written rules say (``_expected``: docs/database.md, "Policies"). Plus the
policy text itself: what the migrations install and restore. The agents' clauses (patients
and records 0008) and the agent-access table have their own test, tests/rls/test_agent_policies.py;
here an agent with no patient set sees nothing.
"""

from __future__ import annotations

import importlib
import uuid
from dataclasses import dataclass

import pytest
from django.db import connection, transaction
from hypothesis import given, settings
from hypothesis import strategies as st

from neonpro.security import rls
from neonpro.security.context import ANONYMOUS, SYSTEM, Identity, acting_as, system_context
from tests.conftest import fuzz_budget

pytestmark = pytest.mark.django_db

CLINICIANS, PATIENTS = 3, 4
STATUSES = ("requested", "confirmed", "cancelled", "completed", "no_show")
# The tables of patients/records 0007 (the agent-access table came later, with 0008).
PHI_TABLES = rls.PATIENTS_TABLES + rls.RECORDS_TABLES
BLOB = b"\x01" * 40
TOKEN = b"\x01" * 60


@dataclass(frozen=True)
class World:
    links: tuple[bool, ...]  # patient i has portal account i
    memberships: tuple[tuple[int, int, int, int | None], ...]  # patient, clinician, start, end (days from today)
    grants: tuple[tuple[int, int, int, bool], ...]  # patient, clinician, expires (hours from now), ended
    statuses: tuple[str, ...]  # one appointment per patient


day = st.integers(-3, 3)
worlds = st.builds(
    World,
    links=st.tuples(*[st.booleans()] * PATIENTS),
    memberships=st.lists(
        st.tuples(st.integers(0, PATIENTS - 1), st.integers(0, CLINICIANS - 1), day, st.none() | day).filter(
            lambda m: m[3] is None or m[3] >= m[2]
        ),
        max_size=8,
        unique_by=lambda m: (m[0], m[1], m[2]),
    ).map(tuple),
    grants=st.lists(
        st.tuples(
            st.integers(0, PATIENTS - 1),
            st.integers(0, CLINICIANS - 1),
            st.integers(-3, 3).filter(bool),
            st.booleans(),
        ),
        max_size=5,
    ).map(tuple),
    statuses=st.tuples(*[st.sampled_from(STATUSES)] * PATIENTS),
)
# Who asks: (role, user index, patient index) — indexes into the world's ids, or None.
personas = [
    *(("clinician", c, None) for c in range(CLINICIANS)),
    *(("patient", p, p) for p in range(PATIENTS)),  # own account, own patient id
    ("patient", 0, 1),  # a patient id that is not the account's patient
    ("patient", 2, None),  # no patient id: only the account link
    ("admin", None, None),
    ("agent", None, None),
    ("system", None, None),
    ("", None, None),
]


@dataclass
class Ids:
    clinicians: list[uuid.UUID]
    accounts: list[uuid.UUID]
    patients: list[uuid.UUID]
    memberships: list[uuid.UUID]
    grants: list[uuid.UUID]
    records: list[uuid.UUID]
    appointments: list[uuid.UUID]
    revisions: list[uuid.UUID]


def _seed(world: World) -> Ids:
    ids = Ids(
        clinicians=[uuid.uuid4() for _ in range(CLINICIANS)],
        accounts=[uuid.uuid4() for _ in range(PATIENTS)],
        patients=[uuid.uuid4() for _ in range(PATIENTS)],
        memberships=[uuid.uuid4() for _ in world.memberships],
        grants=[uuid.uuid4() for _ in world.grants],
        records=[uuid.uuid4() for _ in range(PATIENTS)],
        appointments=[uuid.uuid4() for _ in range(PATIENTS)],
        revisions=[uuid.uuid4() for _ in range(PATIENTS)],
    )
    with system_context("planner policy property test"), connection.cursor() as cursor:
        for role, users in (("clinician", ids.clinicians), ("patient", ids.accounts)):
            for user in users:
                cursor.execute(
                    "INSERT INTO accounts_user (id, password, is_superuser, username, first_name, last_name, email, "
                    "is_staff, is_active, date_joined, role, must_change_password) "
                    "VALUES (%s, '!', false, %s, '', '', '', false, true, now(), %s, false)",
                    [user, f"fuzz-{user}", role],
                )
        for i, patient in enumerate(ids.patients):
            cursor.execute(
                "INSERT INTO patients_patient (id, full_name, date_of_birth, ssn, mrn, email, phone, address, "
                "created_at, updated_at, active, contact_by_email, contact_by_sms, user_id) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, now(), now(), true, false, false, %s)",
                [patient, BLOB, BLOB, TOKEN, TOKEN, TOKEN, TOKEN, BLOB, ids.accounts[i] if world.links[i] else None],
            )
        for row, (p, c, start, end) in zip(ids.memberships, world.memberships, strict=True):
            cursor.execute(
                "INSERT INTO patients_careteammembership (id, starts_on, ends_on, created_at, clinician_id, "
                "patient_id) VALUES (%s, current_date + %s::integer, current_date + %s::integer, now(), %s, %s)",
                [row, start, end, ids.clinicians[c], ids.patients[p]],
            )
        for row, (p, c, hours, ended) in zip(ids.grants, world.grants, strict=True):
            cursor.execute(
                "INSERT INTO patients_emergencyaccessgrant (id, reason, granted_at, expires_at, ended_at, "
                "clinician_id, patient_id, review_outcome) VALUES (%s, %s, "
                "now() + make_interval(hours => %s::integer - 4), now() + make_interval(hours => %s::integer), "
                "CASE WHEN %s::boolean THEN now() END, %s, %s, '')",
                [row, BLOB, hours, hours, ended, ids.clinicians[c], ids.patients[p]],
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
                [
                    ids.revisions[i],
                    ids.records[i],
                    patient,
                    ids.clinicians[0],
                    ids.clinicians[0],
                    BLOB,
                    BLOB,
                    BLOB,
                    BLOB,
                ],
            )
            cursor.execute(
                "INSERT INTO records_appointment (id, scheduled_at, duration_minutes, status, reason, notes, "
                "created_at, updated_at, patient_id, provider_id, row_version) "
                "VALUES (%s, now(), 30, %s, %s, %s, now(), now(), %s, %s, 1)",
                [ids.appointments[i], world.statuses[i], BLOB, BLOB, patient, ids.clinicians[0]],
            )
    return ids


def _identity(persona: tuple[str, int | None, int | None], ids: Ids) -> Identity:
    role, user, patient = persona
    if role == "system":
        return SYSTEM
    if not role:
        return ANONYMOUS
    users = ids.clinicians if role == "clinician" else ids.accounts
    return Identity(
        user_id=users[user] if user is not None else uuid.uuid4(),
        role=role,
        patient_id=ids.patients[patient] if patient is not None else None,
    )


def _expected(world: World, persona: tuple[str, int | None, int | None]) -> dict[str, tuple[set[int], set[int]]]:
    """Per table: (indexes of the rows readable, indexes of the rows lockable for update), from the rules."""
    role, user, patient = persona
    every_patient = set(range(PATIENTS))
    team = {p for p, c, start, end in world.memberships if c == user and start <= 0 and (end is None or end >= 0)}
    granted = {p for p, c, hours, ended in world.grants if c == user and hours > 0 and not ended}
    all_memberships, all_grants = set(range(len(world.memberships))), set(range(len(world.grants)))
    if role == "system":
        return {
            "patients_patient": (every_patient, every_patient),
            "patients_careteammembership": (all_memberships, all_memberships),
            "patients_emergencyaccessgrant": (all_grants, all_grants),
            "records_medicalrecord": (every_patient, every_patient),
            "records_appointment": (every_patient, every_patient),
            "records_medicalrecordrevision": (every_patient, every_patient),
        }
    if role == "clinician":
        readable = team | granted
        mine = {i for i, m in enumerate(world.memberships) if m[1] == user}
        my_grants = {i for i, g in enumerate(world.grants) if g[1] == user}
        return {
            "patients_patient": (readable, team),
            "patients_careteammembership": (mine, set()),
            "patients_emergencyaccessgrant": (my_grants, set()),
            "records_medicalrecord": (readable, team),
            "records_appointment": (readable, team),
            "records_medicalrecordrevision": (readable, set()),
        }
    if role == "patient":
        own = {patient} if patient is not None else set()
        account = {user} if user is not None and world.links[user] else set()
        open_appointments = {p for p in own if world.statuses[p] in ("requested", "confirmed")}
        return {
            "patients_patient": (own | account, own),
            "patients_careteammembership": ({i for i, m in enumerate(world.memberships) if m[0] in own}, set()),
            "patients_emergencyaccessgrant": ({i for i, g in enumerate(world.grants) if g[0] in own}, set()),
            "records_medicalrecord": (own, set()),
            "records_appointment": (own, open_appointments),
            "records_medicalrecordrevision": (own, set()),
        }
    nothing = {table: (set[int](), set[int]()) for table in PHI_TABLES}
    if role == "admin":  # no PHI; manages care teams, reviews grants
        return nothing | {
            "patients_careteammembership": (all_memberships, all_memberships),
            "patients_emergencyaccessgrant": (all_grants, set()),
        }
    return nothing  # an agent with no patient set, and nobody


def _rows(ids: Ids) -> dict[str, list[uuid.UUID]]:
    return {
        "patients_patient": ids.patients,
        "patients_careteammembership": ids.memberships,
        "patients_emergencyaccessgrant": ids.grants,
        "records_medicalrecord": ids.records,
        "records_appointment": ids.appointments,
        "records_medicalrecordrevision": ids.revisions,
    }


def _seen(identity: Identity, table: str, rows: list[uuid.UUID]) -> tuple[set[int], set[int]]:
    index = {row: i for i, row in enumerate(rows)}
    with acting_as(identity), connection.cursor() as cursor:
        cursor.execute(f"SELECT id FROM {table}")
        readable = {index[row[0]] for row in cursor.fetchall() if row[0] in index}
        cursor.execute(f"SELECT id FROM {table} FOR UPDATE")
        lockable = {index[row[0]] for row in cursor.fetchall() if row[0] in index}
    return readable, lockable


@settings(max_examples=fuzz_budget(15))
@given(world=worlds)
def test_every_identity_reads_and_may_update_exactly_what_the_rules_say(world: World) -> None:
    with transaction.atomic():
        ids = _seed(world)
        rows = _rows(ids)
        for persona in personas:
            identity = _identity(persona, ids)
            expected = _expected(world, persona)
            for table in PHI_TABLES:
                assert _seen(identity, table, rows[table]) == expected[table], (persona, table, world)
        transaction.set_rollback(True)


def test_the_care_team_and_grant_rows_a_clinician_may_delete_are_the_administrators() -> None:
    world = World(
        links=(False,) * PATIENTS,
        memberships=((0, 0, -1, None),),
        grants=((0, 0, 1, False),),
        statuses=STATUSES[:PATIENTS],
    )
    with transaction.atomic():
        ids = _seed(world)
        for identity, deleted in (
            (Identity(user_id=ids.clinicians[0], role="clinician"), 0),
            (Identity(user_id=uuid.uuid4(), role="admin"), 1),
        ):
            with transaction.atomic(), acting_as(identity), connection.cursor() as cursor:
                cursor.execute("DELETE FROM patients_careteammembership WHERE id = %s", [ids.memberships[0]])
                assert cursor.rowcount == deleted, identity.role
                transaction.set_rollback(True)
        transaction.set_rollback(True)


def _installed(table: str) -> dict[str, tuple[str | None, str | None]]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT polname, pg_get_expr(polqual, polrelid), pg_get_expr(polwithcheck, polrelid) "
            "FROM pg_policy WHERE polrelid = %s::regclass",
            [table],
        )
        return {name: (using, check) for name, using, check in cursor.fetchall()}


def test_the_installed_policies_are_the_planner_shaped_ones() -> None:
    """What the migrations left is planner-shaped: every SELECT policy searches by column."""
    for table in rls.PATIENTS_TABLES + rls.RECORDS_TABLES:
        installed = _installed(table)
        assert "split_part(current_setting('neonpro.identity'" in (installed[f"{table}_select"][0] or ""), table
        assert " IN (SELECT" not in (installed[f"{table}_select"][0] or ""), table


def test_the_migrations_replace_exactly_the_first_policies_and_restore_them() -> None:
    first, planner = rls.first_policies(), rls.planner_policies()
    assert set(first) == set(planner) == set(PHI_TABLES)
    for table in PHI_TABLES:
        assert set(first[table]) == set(planner[table]) == set(rls.COMMANDS)
        for command in rls.COMMANDS:
            # Only USING clauses change; what a written row must satisfy stays the first text.
            assert planner[table][command][1] == first[table][command][1], (table, command)
    for app, tables in (("patients", rls.PATIENTS_TABLES), ("records", rls.RECORDS_TABLES)):
        migration = importlib.import_module(f"{app}.migrations.0007_planner_rls").Migration
        assert migration.atomic is False  # CREATE INDEX CONCURRENTLY
        (swap,) = [op for op in migration.operations if isinstance(op, rls.ReplacePolicies)]
        assert swap.atomic is True, "all of a table's policies change in one transaction"
        assert swap.sql == [s for t in tables for s in rls.policy_statements(t, planner[t])]
        assert swap.reverse_sql == [s for t in tables for s in rls.policy_statements(t, first[t])]


def test_the_record_historys_first_policies_are_what_records_0005_installed() -> None:
    old = importlib.import_module("records.migrations.0005_row_integrity")
    (protect,) = [op for op in old.Migration.operations if isinstance(op, rls.ProtectTable)]
    assert protect.policies == rls.history_policies_v1()


def test_a_forged_token_naming_the_system_widens_nothing() -> None:
    """The planner hint reads the unverified token; the verified claim still decides."""
    world = World(links=(False,) * PATIENTS, memberships=(), grants=(), statuses=STATUSES[:PATIENTS])
    with transaction.atomic():
        ids = _seed(world)
        with acting_as(Identity(user_id=ids.clinicians[0], role="clinician")), connection.cursor() as cursor:
            cursor.execute("SELECT current_setting('neonpro.identity')")
            token = cursor.fetchone()[0]
            forged = token.replace(":clinician:", ":system:")
            cursor.execute("SELECT set_config('neonpro.identity', %s, true)", [forged])
            cursor.execute("SELECT split_part(current_setting('neonpro.identity'), ':', 4)")
            assert cursor.fetchone()[0] == "system", "the hint now says system"
            for table in PHI_TABLES:
                cursor.execute(f"SELECT count(*) FROM {table}")
                assert cursor.fetchone()[0] == 0, table
        transaction.set_rollback(True)
