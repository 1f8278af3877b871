"""The re-encryption job's statements are planned as index lookups under row-level security.

As ``neonpro_app`` (RLS in force, the system identity the job uses), every statement the job
issues against a table it re-encrypts is EXPLAINed at the moment it is issued, on the same
connection and inside the same batch transaction (so the job's planner settings apply), with
the same parameters: none may read the table other than by bounded primary-key lookups (no
sequential or bitmap scan, no index scan without a condition, no nested loop comparing every
row with every value). The tables hold a few thousand rows —
enough that, without those settings, PostgreSQL picks a sequential scan for the batch UPDATE
(the negative control proves the check can fail) — added in the test's transaction, which
the planner sees through the tables' current size (the application role may not ANALYZE
tables it does not own; a superuser's ANALYZE would not see uncommitted rows).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.db import connection

from keys import reencrypt as job_module
from keys.keyring import keyring
from keys.reencrypt import batch_statements, models_to_reencrypt, reencrypt
from keys.rotation import rotate_data_key
from neonpro.security.context import system_context
from tests.conftest import APP_ROLE, in_thread

pytestmark = pytest.mark.django_db
PATIENTS = 3000
RECORDS = 3000


def _seed() -> None:
    from django.contrib.auth import get_user_model

    from patients.models import Patient
    from records.models import MedicalRecord

    keyring.clear()
    with system_context("test seed"):
        provider = get_user_model().objects.create(username=f"plans-{uuid.uuid4().hex[:8]}", role="clinician")
        patients = [
            Patient(
                full_name=f"Plan Person {i}",
                date_of_birth=dt.date(1970, 1, 1),
                mrn=f"PLAN-{i}",
                ssn=f"{900 + i % 99:03d}-11-{i % 10_000:04d}",
                email=f"plan{i}@example.org",
                phone="+1 555 0100",
                address="1 Plan Street",
            )
            for i in range(PATIENTS)
        ]
        Patient.objects.bulk_create(patients, batch_size=1000)
        MedicalRecord.objects.bulk_create(
            [
                MedicalRecord(patient=patients[i % PATIENTS], provider=provider, diagnosis="Asthma", notes=f"n {i}")
                for i in range(RECORDS)
            ],
            batch_size=1000,
        )
        rotate_data_key("field")  # every value is now under an old key: each batch writes


@contextmanager
def _explained(tables: set[str]) -> Iterator[list[tuple[str, str]]]:
    """Capture (statement, plan) for every statement on ``tables`` the job issues."""
    plans: list[tuple[str, str]] = []
    pattern = re.compile(r'\b(?:FROM|UPDATE|JOIN)\s+"?(' + "|".join(map(re.escape, tables)) + r')"?\b', re.I)

    def explain(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        # The job's one COUNT(*) per model (rows_total, before the first batch) is not a batch statement.
        batch = not many and "COUNT(*)" not in sql.upper()
        if batch and pattern.search(sql) and sql.lstrip().upper().startswith(("SELECT", "UPDATE")):
            raw = context["cursor"].cursor
            raw.execute("EXPLAIN (FORMAT JSON) " + sql, params)
            plans.append((sql, json.dumps(raw.fetchone()[0][0]["Plan"])))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(explain):
        yield plans


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def _scans_whole(plan: str, table: str) -> bool:
    """Whether the plan reads ``table`` other than by bounded primary-key lookups: a sequential
    or bitmap scan, an index scan without an index condition (the whole index, in order), or
    a join that compares every row of one side with every row of the other (a nested loop
    with a join filter: O(batch x rows))."""
    for node in _nodes(json.loads(plan)):
        if node.get("Join Filter") and node["Node Type"] == "Nested Loop":
            return True
        if node.get("Relation Name") != table or not node["Node Type"].endswith("Scan"):
            continue  # (the ModifyTable node names the table it writes, not how it finds rows)
        if node["Node Type"] not in ("Index Scan", "Index Only Scan") or "Index Cond" not in node:
            return True
    return False


def _uses_primary_key(plan: str, table: str) -> bool:
    return any(
        node.get("Relation Name") == table and node.get("Index Name") == f"{table}_pkey"
        for node in _nodes(json.loads(plan))
    )


def test_every_batch_statement_is_an_index_lookup_under_rls() -> None:
    _seed()
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_user, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
        assert cursor.fetchone() == (APP_ROLE, False, False), "the plans must be those of the application role"
    tables = {model._meta.db_table for model, _ in models_to_reencrypt("field")}
    assert {"patients_patient", "records_medicalrecord"} <= tables
    with _explained(tables) as plans:
        jobs = reencrypt("field", batch=500)
    with connection.cursor() as cursor:  # the batches were savepoints of this test's transaction
        cursor.execute("SELECT current_setting('enable_seqscan'), current_setting('enable_bitmapscan')")
        assert cursor.fetchone() == ("on", "on"), "the planner settings do not outlive a batch"
    done = {job.model: job.rows_changed for job in jobs}
    assert done["patients.Patient"] >= PATIENTS and done["records.MedicalRecord"] >= RECORDS
    for table in ("patients_patient", "records_medicalrecord"):
        issued = [(sql, plan) for sql, plan in plans if f'"{table}"' in sql]
        kinds = {sql.split()[0].upper() for sql, _ in issued}
        assert kinds == {"SELECT", "UPDATE"}, f"{table}: the job both reads and writes it"
        assert len([sql for sql, _ in issued if sql.startswith("UPDATE")]) >= 6, f"{table}: one UPDATE per batch"
        for sql, plan in issued:
            assert not _scans_whole(plan, table), f"{table}: sequential scan for\n{sql[:200]}\n{plan}"
            assert _uses_primary_key(plan, table), f"{table}: no primary-key lookup\n{plan}"
    for sql, plan in plans:  # every other model the job visits, however few rows it holds
        for table in tables:
            assert not _scans_whole(plan, table), f"sequential scan of {table} for\n{sql[:200]}\n{plan}"


def test_without_the_planner_settings_the_batch_update_scans_the_table(
    monkeypatch: pytest.MonkeyPatch, owner_cursor: Any
) -> None:
    """Negative control: the same data and statement, planned on RLS's estimates alone.

    The statistics are taken afresh first (of the committed rows: none, the seed is this
    test's transaction), as on a table the job has just filled: left to autovacuum, whatever
    other tests committed earlier decides the estimates, and with them the plan."""
    owner_cursor.execute("ANALYZE patients_patient")
    _seed()
    monkeypatch.setattr(job_module, "INDEX_LOOKUPS", {})
    with _explained({"patients_patient"}) as plans:
        reencrypt("field", batch=500, max_batches=1)
    updates = [plan for sql, plan in plans if sql.startswith("UPDATE")]
    assert updates and any(_scans_whole(plan, "patients_patient") for plan in updates), updates


def test_the_batch_statements_are_keyset_reads_and_primary_key_writes() -> None:
    from patients.models import Patient
    from records.models import MedicalRecord

    [(_, fields)] = [(m, f) for m, f in models_to_reencrypt("field") if m is Patient]
    select, update, sealed = batch_statements(Patient, fields)
    assert 'WHERE "id" > %s ORDER BY "id" LIMIT %s FOR UPDATE' in select
    assert update.startswith('UPDATE "patients_patient" AS t SET')
    assert update.endswith('WHERE t."id" = v.id AND t."id" = ANY(%s::uuid[])')
    assert sealed == "", "patients are not sealed rows"
    [(_, fields)] = [(m, f) for m, f in models_to_reencrypt("field") if m is MedicalRecord]
    _, _, sealed = batch_statements(MedicalRecord, fields)
    assert '"row_version" = v.c' in sealed and '"row_seal" = v.c' in sealed and "%s::bigint[]" in sealed


def _settings_now() -> tuple[str, str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('statement_timeout'), current_setting('enable_seqscan')")
        row = cursor.fetchone()
    return row[0], row[1]


def _run_watched(batch: int) -> tuple[tuple[str, str], list[str], tuple[str, str]]:
    """On a connection of its own (autocommit: each batch a real transaction), run the job and
    note the settings in force at each batch's read, then those after the job."""
    seen: list[str] = []

    def watch(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if sql.startswith("SELECT") and "FOR UPDATE" in sql and "patients_patient" in sql:
            raw = context["cursor"].cursor
            raw.execute("SELECT current_setting('statement_timeout'), current_setting('enable_seqscan')")
            seen.append("/".join(raw.fetchone()))
        return execute(sql, params, many, context)

    before = _settings_now()
    with connection.execute_wrapper(watch):
        reencrypt("field", batch=batch, max_batches=2)
    return before, seen, _settings_now()


def _seed_committed() -> None:
    from patients.models import Patient

    keyring.clear()
    with system_context("test seed"):
        Patient.objects.bulk_create(
            [Patient(full_name=f"Timeout {i}", date_of_birth=dt.date(1970, 1, 1), mrn=f"TMO-{i}") for i in range(4)]
        )
        rotate_data_key("field")


def test_each_batch_runs_with_the_long_statement_timeout_and_only_the_batch(settings: Any) -> None:
    """``long_statements`` (SET LOCAL) and the planner settings are in force inside every batch
    transaction, and end with it: the connection is back to the request limits afterwards."""
    settings.NEONPRO_DB_LONG_STATEMENT_TIMEOUT_MS = 123_456
    in_thread(_seed_committed)
    before, seen, after = in_thread(_run_watched, 2)
    assert seen and set(seen) == {"123456ms/off"}, seen
    assert before[1] == "on" and before[0] != "123456ms"
    assert after == before, "the batch's settings end with its transaction"
