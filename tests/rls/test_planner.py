"""Plans of scope-only queries under row-level security, as the application role.

The data set is large enough that a policy PostgreSQL cannot search in an index shows: a
sequential scan of the whole table and a sort (the shape before patients/records 0007). It
is written once for the module (committed, plain SQL, placeholder ciphertext that is never
decrypted) by the suite's superuser with triggers off (``session_replication_role =
replica``: no per-row foreign-key checks, so it takes seconds), analysed, and deleted again
afterwards. Only the data is written that way: every query is the application role's.

* PATIENTS patients, created 37 minutes apart; two records and one appointment each;
* clinician SMALL: 10 active care-team patients, plus 30 ended and future memberships that
  must not count, and 2 active break-glass grants (12 patients visible);
* clinician LARGE: 1,000 active care-team patients; 100 other clinicians share the rest;
* 2,000 expired grants spread over the other clinicians.

Every query runs with the clinician's signed identity (``acting_as``), exactly as the app
sends it, under ``EXPLAIN (ANALYZE, FORMAT JSON)``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from django.db import connection

from neonpro.security.context import SYSTEM, Identity, acting_as
from patients.models import Patient
from tests.conftest import superuser_dsn

pytestmark = pytest.mark.django_db

PATIENTS = 30_000
BIG_TABLES = {"patients_patient", "records_medicalrecord", "records_appointment"}
# Ids of this module's rows: a prefix no uuid4 of another test shares in practice.
PATIENT_PREFIX = "0e1a5000-0000-4000-9000-"
USER_PREFIX = "0e1a5000-0000-4000-8000-"
SMALL = uuid.UUID(f"{USER_PREFIX}{1:012x}")
LARGE = uuid.UUID(f"{USER_PREFIX}{2:012x}")
OTHERS = 100  # clinicians 3..102


def _patient(n: str) -> str:
    return f"('{PATIENT_PREFIX}' || lpad(to_hex({n}), 12, '0'))::uuid"


def _user(n: str) -> str:
    return f"('{USER_PREFIX}' || lpad(to_hex({n}), 12, '0'))::uuid"


# Care team of patient p: SMALL for p % 3000 = 7 up to 10 patients, LARGE for p % 30 = 11
# (1,000 patients), one of the others otherwise.
TEAM = f"CASE WHEN p % 3000 = 7 THEN 1 WHEN p % 30 = 11 THEN 2 ELSE 3 + p % {OTHERS} END"  # 30,000 / 3,000 = 10
SEED = [
    "INSERT INTO accounts_user (id, password, is_superuser, username, first_name, last_name, email, is_staff, "
    "is_active, date_joined, role, must_change_password) "
    f"SELECT {_user('c')}, '!', false, 'planner-' || c, '', '', '', false, true, now(), 'clinician', false "
    f"FROM generate_series(1, {OTHERS + 2}) c",
    "INSERT INTO patients_patient (id, full_name, date_of_birth, ssn, mrn, email, phone, address, created_at, "
    "updated_at, active, contact_by_email, contact_by_sms, user_id) "
    f"SELECT {_patient('p')}, b, b, s, s, s, s, b, timestamptz '2020-01-01' + p * interval '37 minutes', now(), "
    "true, false, false, NULL "
    f"FROM generate_series(1, {PATIENTS}) p, "
    "(SELECT decode(repeat('01', 40), 'hex') b, decode(repeat('01', 60), 'hex') s) v",
    "INSERT INTO patients_careteammembership (id, starts_on, ends_on, created_at, clinician_id, patient_id) "
    f"SELECT gen_random_uuid(), date '2020-01-01', NULL, now(), {_user(TEAM)}, {_patient('p')} "
    f"FROM generate_series(1, {PATIENTS}) p",
    # SMALL's ended and not-yet-started memberships: visible rows for no one's list.
    "INSERT INTO patients_careteammembership (id, starts_on, ends_on, created_at, clinician_id, patient_id) "
    "SELECT gen_random_uuid(), CASE WHEN p % 200 = 0 THEN date '2019-01-01' ELSE date '2099-01-01' END, "
    f"CASE WHEN p % 200 = 0 THEN date '2019-06-01' END, now(), {_user('1')}, {_patient('p')} "
    "FROM generate_series(100, 3000, 100) p",
    "INSERT INTO patients_emergencyaccessgrant (id, reason, granted_at, expires_at, ended_at, clinician_id, "
    "patient_id, review_outcome, reviewed_at, reviewed_by_id) "
    "SELECT gen_random_uuid(), decode(repeat('01', 40), 'hex'), "
    "CASE WHEN g <= 2 THEN now() - interval '1 hour' ELSE timestamptz '2021-01-01' END, "
    "CASE WHEN g <= 2 THEN now() + interval '5 hours' ELSE timestamptz '2021-01-02' END, NULL, "
    f"CASE WHEN g <= 2 THEN {_user('1')} ELSE {_user(f'3 + g % {OTHERS}')} END, "
    f"{_patient(f'1 + (g * 7919) % {PATIENTS}')}, '', NULL, NULL "
    "FROM generate_series(1, 2000) g",
    "INSERT INTO records_medicalrecord (id, record_date, diagnosis, treatment_plan, medications, lab_results, notes, "
    "created_at, updated_at, patient_id, provider_id, row_seal, row_version) "
    "SELECT gen_random_uuid(), date '2016-01-01' + (r * 7919) % 3650, b, b, b, NULL, b, now(), now(), "
    f"{_patient(f'1 + r % {PATIENTS}')}, {_user('3')}, NULL, 1 "
    f"FROM generate_series(1, {2 * PATIENTS}) r, (SELECT decode(repeat('01', 40), 'hex') b) v",
    "INSERT INTO records_appointment (id, scheduled_at, duration_minutes, status, reason, notes, created_at, "
    "updated_at, patient_id, provider_id, row_seal, row_version) "
    "SELECT gen_random_uuid(), timestamptz '2024-01-01' + (a * 7919 % 100000) * interval '10 minutes', 30, "
    f"'confirmed', b, b, now(), now(), {_patient('a')}, {_user(TEAM.replace('p', 'a'))}, NULL, 1 "
    f"FROM generate_series(1, {PATIENTS}) a, (SELECT decode(repeat('01', 40), 'hex') b) v",
]
PATIENT_RANGE = f"BETWEEN '{PATIENT_PREFIX}000000000000' AND '{PATIENT_PREFIX}ffffffffffff'"
CLEAN = [
    f"DELETE FROM records_appointment WHERE patient_id {PATIENT_RANGE}",
    f"DELETE FROM records_medicalrecord WHERE patient_id {PATIENT_RANGE}",
    f"DELETE FROM patients_emergencyaccessgrant WHERE patient_id {PATIENT_RANGE}",
    f"DELETE FROM patients_careteammembership WHERE patient_id {PATIENT_RANGE}",
    f"DELETE FROM patients_patient WHERE id {PATIENT_RANGE}",
    f"DELETE FROM accounts_user WHERE id BETWEEN '{USER_PREFIX}000000000000' AND '{USER_PREFIX}ffffffffffff'",
]
TABLES = (
    "accounts_user",
    "patients_patient",
    "patients_careteammembership",
    "patients_emergencyaccessgrant",
    "records_medicalrecord",
    "records_appointment",
)


def _run(conn: psycopg.Connection[Any], statements: list[str]) -> None:
    with conn.transaction():
        conn.execute("SET LOCAL session_replication_role = replica")
        for statement in statements:
            conn.execute(statement)
    for table in TABLES:
        conn.execute(f"VACUUM (ANALYZE) {table}")


@pytest.fixture(scope="module")
def hospital(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    with django_db_blocker.unblock():
        dbname = connection.settings_dict["NAME"]
        connection.close()
    with psycopg.connect(superuser_dsn(dbname), autocommit=True) as conn:
        _run(conn, CLEAN)  # what an interrupted run left behind
        _run(conn, SEED)
        try:
            yield
        finally:
            _run(conn, CLEAN)


def _explain(identity: Identity, sql: str, params: list[Any] | None = None) -> dict[str, Any]:
    with acting_as(identity), connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", params or [])
        value = cursor.fetchone()[0]
    plan = json.loads(value) if isinstance(value, str) else value
    return plan[0]["Plan"]  # type: ignore[no-any-return]


def _nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", ()):
        yield from _nodes(child)


def _scans(plan: dict[str, Any], table: str) -> list[dict[str, Any]]:
    """The nodes that read ``table`` itself (not a sub-plan's table), outermost first."""
    return [node for node in _nodes(plan) if node.get("Relation Name") == table]


def _assert_no_seq_scan_of_a_big_table(plan: dict[str, Any]) -> None:
    seq = [node["Relation Name"] for node in _nodes(plan) if node["Node Type"] == "Seq Scan"]
    assert not BIG_TABLES & set(seq), f"sequential scan of {sorted(BIG_TABLES & set(seq))}"


def _assert_no_sort_of_the_whole_table(plan: dict[str, Any], limit: int) -> None:
    for node in _nodes(plan):
        if node["Node Type"] == "Sort":
            assert node["Actual Rows"] <= 2000, f"sorted {node['Actual Rows']} rows for a page of {limit}"


SMALL_ID = Identity(user_id=SMALL, role="clinician")
LARGE_ID = Identity(user_id=LARGE, role="clinician")
PAGE = 50
MY_PATIENTS = "SELECT id, created_at FROM patients_patient ORDER BY created_at DESC, id DESC LIMIT 50"


def test_the_care_team_list_starts_from_the_care_team_and_estimates_its_size(hospital: None) -> None:
    plan = _explain(SMALL_ID, MY_PATIENTS)
    _assert_no_seq_scan_of_a_big_table(plan)
    assert plan["Actual Rows"] == 12, "10 care-team patients and 2 granted ones"
    (scan,) = _scans(plan, "patients_patient")
    assert scan["Node Type"] in ("Bitmap Heap Scan", "Index Scan")
    # An honest estimate: within 10x of what it returns (it was a fraction of the table).
    estimate, actual = scan["Plan Rows"], scan["Actual Rows"]
    assert actual / 10 <= estimate <= actual * 10, (estimate, actual)


def test_a_keyset_page_of_a_large_care_team_reads_the_team_not_the_table(hospital: None) -> None:
    with acting_as(LARGE_ID), connection.cursor() as cursor:
        cursor.execute(MY_PATIENTS)
        first_page = cursor.fetchall()
    assert len(first_page) == PAGE
    last_id, last_created = first_page[-1]
    plan = _explain(
        LARGE_ID,
        "SELECT id, created_at FROM patients_patient WHERE (created_at, id) < (%s, %s) "
        "ORDER BY created_at DESC, id DESC LIMIT 50",
        [last_created, last_id],
    )
    _assert_no_seq_scan_of_a_big_table(plan)
    assert plan["Actual Rows"] == PAGE
    (scan,) = _scans(plan, "patients_patient")
    assert scan["Actual Rows"] <= 1000, "the page is cut from the care team's 1,000 patients"


def test_the_orm_list_as_the_app_sends_it_uses_the_same_plan(hospital: None) -> None:
    with acting_as(SMALL_ID):
        sql, params = Patient.objects.order_by("-created_at", "-id").values_list("id")[:PAGE].query.sql_with_params()
    plan = _explain(SMALL_ID, sql, list(params))
    _assert_no_seq_scan_of_a_big_table(plan)
    assert plan["Actual Rows"] == 12


def test_a_patients_records_timeline_page_and_appointments_page_use_their_keyset_indexes(hospital: None) -> None:
    patient = uuid.UUID(f"{PATIENT_PREFIX}{7:012x}")  # on SMALL's care team
    timeline = _explain(
        SMALL_ID,
        "SELECT id, record_date FROM records_medicalrecord WHERE patient_id = %s "
        "ORDER BY record_date DESC, id DESC LIMIT 50",
        [patient],
    )
    appointments = _explain(
        SMALL_ID,
        "SELECT id, scheduled_at FROM records_appointment WHERE patient_id = %s ORDER BY scheduled_at, id LIMIT 50",
        [patient],
    )
    for plan, index, rows in (
        (timeline, "record_patient_timeline", 2),
        (appointments, "appointment_patient_time_id", 1),
    ):
        _assert_no_seq_scan_of_a_big_table(plan)
        assert plan["Actual Rows"] == rows
        assert {node.get("Index Name") for node in _nodes(plan)} >= {index}
        assert not [node for node in _nodes(plan) if node["Node Type"] == "Sort"], "the index gives the order"


def test_a_providers_appointments_page_reads_the_provider_index(hospital: None) -> None:
    plan = _explain(
        LARGE_ID,
        "SELECT id, scheduled_at FROM records_appointment WHERE provider_id = %s ORDER BY scheduled_at, id LIMIT 50",
        [LARGE],
    )
    _assert_no_seq_scan_of_a_big_table(plan)
    _assert_no_sort_of_the_whole_table(plan, PAGE)
    assert plan["Actual Rows"] == PAGE


@pytest.mark.parametrize(
    ("table", "small", "large"),
    [
        ("patients_patient", 12, 1000),
        ("records_medicalrecord", 24, 2000),
        ("records_appointment", 12, 1000),
    ],
)
def test_everything_i_may_see_is_read_through_indexes(hospital: None, table: str, small: int, large: int) -> None:
    for identity, expected in ((SMALL_ID, small), (LARGE_ID, large)):
        plan = _explain(identity, f"SELECT count(*) FROM {table}")
        _assert_no_seq_scan_of_a_big_table(plan)
        (scan,) = _scans(plan, table)
        assert scan["Actual Rows"] == expected, (table, identity.user_id)


def test_the_system_walks_a_table_by_primary_key_without_reading_it_all(hospital: None) -> None:
    """Re-encryption's keyset walk: the system sees every row, and the planner knows it."""
    plan = _explain(
        SYSTEM,
        "SELECT id FROM patients_patient WHERE id > %s ORDER BY id LIMIT 500",
        [uuid.UUID(f"{PATIENT_PREFIX}{100:012x}")],
    )
    _assert_no_seq_scan_of_a_big_table(plan)
    (scan,) = _scans(plan, "patients_patient")
    assert scan["Node Type"] == "Index Scan" and scan["Index Name"] == "patients_patient_pkey"
    assert scan["Actual Rows"] == 500
    assert scan["Plan Rows"] >= PATIENTS / 10, "the system's estimate is not collapsed either"


def test_a_date_range_keeps_the_timeline_and_the_schedule_on_their_indexes(hospital: None) -> None:
    """The API's ``?from=&to=`` filters (neonpro.security.filters), as the list services send them."""
    import datetime as dt

    from neonpro.security.filters import DateRange
    from records.models import Appointment, MedicalRecord
    from records.services import APPOINTMENT_ORDER, RECORD_ORDER

    dates = DateRange(start=dt.date(2016, 1, 1), end=dt.date(2035, 12, 31))
    patient = uuid.UUID(f"{PATIENT_PREFIX}{7:012x}")  # on SMALL's care team
    with acting_as(SMALL_ID):
        records = MedicalRecord.objects.filter(patient_id=patient, **dates.on_dates("record_date"))
        timeline = records.order_by(*RECORD_ORDER).values_list("id")[: PAGE + 1].query.sql_with_params()
    with acting_as(LARGE_ID):
        appointments = Appointment.objects.filter(provider_id=LARGE, **dates.on_times("scheduled_at"))
        schedule = appointments.order_by(*APPOINTMENT_ORDER).values_list("id")[: PAGE + 1].query.sql_with_params()

    plan = _explain(SMALL_ID, timeline[0], list(timeline[1]))
    _assert_no_seq_scan_of_a_big_table(plan)
    assert plan["Actual Rows"] == 2
    assert "record_patient_timeline" in {node.get("Index Name") for node in _nodes(plan)}
    assert not [node for node in _nodes(plan) if node["Node Type"] == "Sort"], "the index gives the order"
    plan = _explain(LARGE_ID, schedule[0], list(schedule[1]))  # as without a range (above)
    _assert_no_seq_scan_of_a_big_table(plan)
    _assert_no_sort_of_the_whole_table(plan, PAGE)
    assert plan["Actual Rows"] == PAGE + 1
