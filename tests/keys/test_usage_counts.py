"""``count_key_usage``: one scan per table (every column counted at once), exact per field,
with the long statement timeout, and still refusing to guess for purposes it cannot count."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from keys.models import DataKey
from keys.reencrypt import models_to_reencrypt, reencrypt
from keys.rotation import UncountableUsageError, count_key_usage, rotate_data_key

pytestmark = pytest.mark.django_db


@pytest.fixture
def fresh_keys() -> None:
    """New active keys for this test (other tests' committed rows stay under theirs)."""
    rotate_data_key("field")
    rotate_data_key("index")


def _active(purpose: str) -> DataKey:
    return DataKey.objects.get(purpose=purpose, status="active")


def _usage_statements(queries: list[dict[str, Any]]) -> list[str]:
    return [q["sql"] for q in queries if "FILTER (WHERE substr(" in q["sql"]]


def test_one_scan_per_table_for_either_purpose(patient_factory: Any, fresh_keys: Any) -> None:
    for _ in range(5):
        patient_factory()
    old_field, old_index = _active("field"), _active("index")
    rotate_data_key("field")

    with CaptureQueriesContext(connection) as queries:
        usage = count_key_usage(old_field)
    tables = {m._meta.db_table for m, _ in models_to_reencrypt("field")}
    assert len(_usage_statements(queries.captured_queries)) == len(tables), "one statement per table, not per column"
    assert usage["patients.Patient.full_name"] >= 5 and usage["patients.Patient.ssn"] >= 5

    with CaptureQueriesContext(connection) as queries:
        index_usage = count_key_usage(old_index)
    searchable = {m._meta.db_table for m, fields in models_to_reencrypt("index") if any(f.search for f in fields)}
    assert len(_usage_statements(queries.captured_queries)) == len(searchable)
    allowed = {f"{m._meta.label}.{f.name}" for m, fields in models_to_reencrypt("index") for f in fields if f.search}
    assert set(index_usage) <= allowed and index_usage["patients.Patient.mrn"] >= 5

    reencrypt("field")
    assert count_key_usage(old_field) == {}
    moved = count_key_usage(old_index)  # still the active index key: the job moves every blind index onto it
    assert moved["patients.Patient.mrn"] >= index_usage["patients.Patient.mrn"]


def test_the_exact_counts_follow_the_job(patient_factory: Any, fresh_keys: Any) -> None:
    """Rows the job has not reached yet are counted, those it has are not (per field)."""
    before = count_key_usage(_active("field"))
    for _ in range(3):
        patient_factory(email=None, phone=None, address=None)  # 4 values each: name, dob, ssn, mrn
    old = _active("field")
    after = count_key_usage(old)
    assert {k: after.get(k, 0) - before.get(k, 0) for k in after if k.startswith("patients.Patient.")} == {
        "patients.Patient.full_name": 3,
        "patients.Patient.date_of_birth": 3,
        "patients.Patient.ssn": 3,
        "patients.Patient.mrn": 3,
    }


def test_counts_run_with_the_long_statement_timeout(settings: Any, fresh_keys: Any) -> None:
    settings.NEONPRO_DB_LONG_STATEMENT_TIMEOUT_MS = 654_321
    seen: list[str] = []

    def watch(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if "FILTER (WHERE substr(" in sql:
            raw = context["cursor"].cursor
            raw.execute("SELECT current_setting('statement_timeout')")
            seen.append(raw.fetchone()[0])
        return execute(sql, params, many, context)

    with connection.execute_wrapper(watch):
        count_key_usage(_active("field"))
    assert seen and set(seen) == {"654321ms"}


def test_purposes_outside_the_columns_still_cannot_be_counted(fresh_keys: Any) -> None:
    key = rotate_data_key("file")
    with CaptureQueriesContext(connection) as queries, pytest.raises(UncountableUsageError, match="cannot count"):
        count_key_usage(key)
    assert _usage_statements(queries.captured_queries) == [], "no scan pretends to count them"


def test_without_a_long_transaction_hook_nothing_is_lifted(settings: Any) -> None:
    """``keys`` depends on nothing of NeonPro's: without NEONPRO_KEYS_LONG_TRANSACTION its jobs
    keep the connection's limits (a context manager that does nothing)."""
    from contextlib import nullcontext

    from keys.conf import keys_settings
    from neonpro.db.limits import long_statements

    assert keys_settings.LONG_TRANSACTION is long_statements
    settings.NEONPRO_KEYS_LONG_TRANSACTION = ""
    assert keys_settings.LONG_TRANSACTION is nullcontext
