"""keys.migrate_in on real PostgreSQL: plaintext columns and django-cryptography values into envelope v1.

django-cryptography values come from the real package: written through its ``encrypt()``
fields by the ORM, in this process (current SECRET_KEY) and in a separate "old app" process
configured with its own SECRET_KEY / CRYPTOGRAPHY_KEY / CRYPTOGRAPHY_SALT.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.conf import settings
from django.db import connection
from django.db.migrations.state import ModelState, ProjectState

from keys import djcrypto
from keys.exceptions import AuthenticationError, DecryptionError, EncryptionError, KeysError
from keys.migrate_in import (
    EncryptColumn,
    FinishInPlaceImport,
    MigrationCounts,
    encrypt_plaintext_column,
    import_djcrypto,
)
from neonpro.audit.models import AuditEvent
from tests.conftest import APP_ROLE, OWNER_ROLE, in_thread
from tests.keys.migrate_in_models import MIGRATE_IN_MODELS, ImportedRecord, LegacyRecord, PlaintextRecord

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("migrate_in_tables", "system")]

PLAIN_FIELDS = ("name", "born", "visits", "email", "data")
LEGACY_FIELDS = ["name", "born", "visits", "email"]
LEGACY_TABLE = "keys_tests_legacyrecord"
OLD_SECRET = "old-app-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz"
OLD_CRYPTOGRAPHY_KEY = "old-app-cryptography-key-zyxwvutsrqponmlkjihgfedcba"
OLD_ROWS: list[dict[str, Any]] = [
    {"name": "Ada Lovelace ✓", "born": "1815-12-10", "visits": 42, "email": "ada@example.org"},
    {"name": "Bob", "born": None, "visits": 0, "email": None},
    {"name": None, "born": "2000-02-29", "visits": -7, "email": "b@example.org"},
    {"name": "", "born": None, "visits": None, "email": None},
]


# -- tables and helpers -----------------------------------------------------------------


def _owner_connection() -> psycopg.Connection[Any]:
    db = settings.DATABASES["default"]
    return psycopg.connect(
        f"host={db['HOST'] or '127.0.0.1'} port={db['PORT'] or 5432} user={OWNER_ROLE} "
        f"dbname={connection.settings_dict['NAME']}",
        autocommit=True,
    )


@pytest.fixture(scope="session")
def migrate_in_tables(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """Create the test tables as the owner (the app role has no DDL), unless conftest already did."""
    tables = [model._meta.db_table for model in MIGRATE_IN_MODELS]
    with django_db_blocker.unblock():
        with connection.schema_editor(collect_sql=True) as editor:
            for model in MIGRATE_IN_MODELS:
                editor.create_model(model)
        statements = list(editor.collected_sql)
        with _owner_connection() as conn:
            created = not any(conn.execute("SELECT to_regclass(%s)", [t]).fetchone()[0] for t in tables)  # type: ignore[index]
            if created:
                for statement in statements:
                    conn.execute(statement)  # type: ignore[arg-type]
                for table in tables:
                    conn.execute(f'GRANT SELECT, INSERT, UPDATE, DELETE ON "{table}" TO {APP_ROLE}')  # type: ignore[arg-type]
    yield
    if created:
        with django_db_blocker.unblock(), _owner_connection() as conn:
            for table in tables:
                conn.execute(f'DROP TABLE IF EXISTS "{table}"')  # type: ignore[arg-type]


def _raw(table: str, columns: list[str]) -> dict[uuid.UUID, tuple[bytes | None, ...]]:
    """Stored values by primary key, as the database holds them."""
    with connection.cursor() as cursor:
        cursor.execute(f'SELECT id, {", ".join(columns)} FROM "{table}"')
        return {row[0]: tuple(None if v is None or isinstance(v, str) else bytes(v) for v in row[1:]) for row in cursor}


def _plaintext(pk: uuid.UUID) -> tuple[Any, ...]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {', '.join(PLAIN_FIELDS)} FROM keys_tests_plaintextrecord WHERE id = %s", [pk])
        return tuple(cursor.fetchone())


def _make_plaintext_rows(n: int) -> list[PlaintextRecord]:
    rows = [
        PlaintextRecord.objects.create(
            name=None if i == 5 else f"Person {i} ✓",
            born=dt.date(1980, 1, 1) + dt.timedelta(days=400 * i),
            visits=i * 7 if i % 4 else None,
            email=f"P{i}@Example.org",
            data={"i": i, "tags": ["a", "ü"]} if i % 3 else None,
        )
        for i in range(n)
    ]
    return sorted(rows, key=lambda r: r.pk)


def _encrypt_all(batch: int = 3) -> dict[str, MigrationCounts]:
    return {
        name: encrypt_plaintext_column(PlaintextRecord, source_column=name, field_name=f"{name}_enc", batch=batch)
        for name in PLAIN_FIELDS
    }


def _assert_twins_match(*names: str) -> None:
    for obj in PlaintextRecord.objects.all():
        for name in names or PLAIN_FIELDS:
            assert getattr(obj, f"{name}_enc") == getattr(obj, name), (obj.pk, name)


def _old_app(rows: list[dict[str, Any]], **old_settings: str) -> list[dict[str, bytes | None]]:
    """Rows as a django-cryptography app with ``old_settings`` stores them (a separate process)."""
    script = Path(__file__).with_name("djcrypto_old_app.py")
    result = subprocess.run(
        [sys.executable, str(script)],
        input=json.dumps({"settings": old_settings, "rows": rows}),
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env={"PATH": os.environ.get("PATH", "")},  # nothing of this process's settings
    )
    return [{k: None if v is None else bytes.fromhex(v) for k, v in row.items()} for row in json.loads(result.stdout)]


def _insert_legacy(stored: list[dict[str, bytes | None]], ids: list[uuid.UUID] | None = None) -> list[uuid.UUID]:
    ids = ids or [uuid.uuid4() for _ in stored]
    with connection.cursor() as cursor:
        for pk, row in zip(ids, stored, strict=True):
            cursor.execute(
                f"INSERT INTO {LEGACY_TABLE} (id, name, born, visits, email) VALUES (%s, %s, %s, %s, %s)",
                [pk, *(row[f] for f in LEGACY_FIELDS)],
            )
    return ids


def _expected(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "born": None if row["born"] is None else dt.date.fromisoformat(row["born"])}


def _assert_imported(ids: list[uuid.UUID], rows: list[dict[str, Any]]) -> None:
    for pk, row in zip(ids, rows, strict=True):
        obj = ImportedRecord.objects.get(pk=pk)
        for name, value in _expected(row).items():
            assert getattr(obj, name) == value, (pk, name)
            assert type(getattr(obj, name)) is type(value), (pk, name)


def _assert_all_envelope_v1() -> None:
    for values in _raw(LEGACY_TABLE, LEGACY_FIELDS).values():
        for name, value in zip(LEGACY_FIELDS, values, strict=True):
            if value is not None:
                assert value[20 if name == "email" else 0] == 1, name  # email is searchable: index bytes first


# -- plaintext -> encrypted -------------------------------------------------------------


def test_encrypts_every_row_in_batches_and_leaves_the_plaintext_untouched() -> None:
    rows = _make_plaintext_rows(11)
    before = {r.pk: _plaintext(r.pk) for r in rows}
    counts = _encrypt_all(batch=3)
    assert counts["name"].values_written == 10 and counts["name"].batches == 4 and counts["name"].complete
    assert counts["data"].values_written == 7
    assert {r.pk: _plaintext(r.pk) for r in rows} == before
    _assert_twins_match()
    for name_enc, email_enc in _raw("keys_tests_plaintextrecord", ["name_enc", "email_enc"]).values():
        assert email_enc is not None and email_enc[20] == 1
        assert name_enc is None or name_enc[0] == 1
    assert (
        PlaintextRecord.objects.get(email_enc="p3@example.org").pk == PlaintextRecord.objects.get(name="Person 3 ✓").pk
    )
    assert "10 values encrypted" in counts["name"].summary()


def test_an_interrupted_run_resumes_where_it_stopped_and_a_rerun_is_a_noop() -> None:
    _make_plaintext_rows(10)  # nine names (row 5 has none)

    class StopRunError(Exception):
        pass

    def stop_after_two_batches(counts: MigrationCounts) -> None:
        if counts.batches == 2:
            raise StopRunError

    with pytest.raises(StopRunError):
        encrypt_plaintext_column(
            PlaintextRecord, source_column="name", field_name="name_enc", batch=3, progress=stop_after_two_batches
        )
    done = {pk: v[0] for pk, v in _raw("keys_tests_plaintextrecord", ["name_enc"]).items() if v[0] is not None}
    assert len(done) == 6

    first = encrypt_plaintext_column(
        PlaintextRecord, source_column="name", field_name="name_enc", batch=2, max_batches=1
    )
    assert (first.values_written, first.complete) == (2, False)
    rest = encrypt_plaintext_column(PlaintextRecord, source_column="name", field_name="name_enc", batch=3)
    assert (rest.values_written, rest.complete) == (1, True)
    after = _raw("keys_tests_plaintextrecord", ["name_enc"])
    assert all(after[pk][0] == token for pk, token in done.items())  # resumed, not redone
    _assert_twins_match("name")

    again = encrypt_plaintext_column(PlaintextRecord, source_column="name", field_name="name_enc", batch=3)
    assert (again.batches, again.values_written, again.complete) == (0, 0, True)
    assert _raw("keys_tests_plaintextrecord", ["name_enc"]) == after


def test_a_write_between_batches_is_not_lost() -> None:
    rows = _make_plaintext_rows(9)
    first = encrypt_plaintext_column(
        PlaintextRecord, source_column="name", field_name="name_enc", batch=3, max_batches=1
    )
    assert first.values_written == 3
    # The app (writing both columns, step b) changes a row the job has done; a row it has
    # not reached yet changes too.
    early = PlaintextRecord.objects.get(pk=rows[1].pk)
    early.name = early.name_enc = "Changed after its batch"
    early.save()
    PlaintextRecord.objects.filter(pk=rows[7].pk).update(name="Changed before its batch")

    encrypt_plaintext_column(PlaintextRecord, source_column="name", field_name="name_enc", batch=3)

    assert PlaintextRecord.objects.get(pk=rows[1].pk).name_enc == "Changed after its batch"
    assert PlaintextRecord.objects.get(pk=rows[7].pk).name_enc == "Changed before its batch"
    _assert_twins_match("name")


def test_recheck_repairs_what_a_plaintext_only_writer_left_behind() -> None:
    named = [row for row in _make_plaintext_rows(6) if row.name and row.data]
    _encrypt_all()
    # An old app instance (still writing only the plaintext) changes two rows after their batch.
    PlaintextRecord.objects.filter(pk=named[0].pk).update(name="Renamed by old code", data={"new": True})
    PlaintextRecord.objects.filter(pk=named[1].pk).update(name=None)
    assert encrypt_plaintext_column(PlaintextRecord, source_column="name", field_name="name_enc").values_written == 0

    name = encrypt_plaintext_column(PlaintextRecord, source_column="name", field_name="name_enc", batch=4, recheck=True)
    data = encrypt_plaintext_column(PlaintextRecord, source_column="data", field_name="data_enc", recheck=True)

    assert (name.values_repaired, name.values_written, data.values_repaired) == (2, 0, 1)
    _assert_twins_match()
    again = encrypt_plaintext_column(PlaintextRecord, source_column="name", field_name="name_enc", recheck=True)
    assert again.values_repaired == 0 and again.rows_scanned == 4  # rows 1 and 5 have no name at all


def test_the_encrypt_column_operation_runs_forwards_and_backwards() -> None:
    _make_plaintext_rows(5)
    state = ProjectState()
    state.add_model(ModelState.from_model(PlaintextRecord))
    operation = EncryptColumn("plaintextrecord", "email", "email_enc", batch=2)

    with connection.schema_editor() as editor:
        operation.database_forwards("keys_tests", editor, state, state)
    _assert_twins_match("email")  # written through the historical model, read through the real one
    assert PlaintextRecord.objects.filter(email_enc="P2@EXAMPLE.ORG").count() == 1

    with connection.schema_editor() as editor:
        operation.database_backwards("keys_tests", editor, state, state)
    assert not PlaintextRecord.objects.filter(email_enc__isnull=False).exists()
    assert operation.deconstruct() == ("EncryptColumn", ("plaintextrecord", "email", "email_enc"), {"batch": 2})
    assert operation.describe() == "Encrypt plaintextrecord.email into email_enc"


def test_bad_arguments_and_unfit_values_are_refused_without_the_value() -> None:
    with pytest.raises(KeysError, match="no column 'nope'"):
        encrypt_plaintext_column(PlaintextRecord, source_column="nope", field_name="name_enc")
    with pytest.raises(KeysError, match="not an encrypted field"):
        encrypt_plaintext_column(PlaintextRecord, source_column="name", field_name="email")
    with pytest.raises(KeysError, match="batch"):
        encrypt_plaintext_column(PlaintextRecord, source_column="name", field_name="name_enc", batch=0)
    with pytest.raises(KeysError, match="no model"):
        import_djcrypto("nosuch.Model", ["name"])
    row = PlaintextRecord.objects.create(name="not a date 4711")

    with pytest.raises(EncryptionError) as caught:
        encrypt_plaintext_column(PlaintextRecord, source_column="name", field_name="born_enc")

    assert str(row.pk) in str(caught.value) and "born_enc" in str(caught.value)
    assert "4711" not in str(caught.value)
    assert _raw("keys_tests_plaintextrecord", ["born_enc"])[row.pk] == (None,)


# -- django-cryptography -> envelope v1 -------------------------------------------------


def test_imports_what_django_cryptography_wrote_through_the_orm() -> None:
    values = [_expected(row) for row in OLD_ROWS]
    ids = [LegacyRecord.objects.create(**v).pk for v in values]
    assert LegacyRecord.objects.get(pk=ids[0]).name == "Ada Lovelace ✓"  # the real package reads them
    assert all(v is None or v[0] == 0x80 for row in _raw(LEGACY_TABLE, LEGACY_FIELDS).values() for v in row)
    start = AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0

    counts = import_djcrypto(ImportedRecord, LEGACY_FIELDS, batch=3)  # the current SECRET_KEY wrote them

    assert (counts.values_written, counts.values_skipped, counts.complete) == (10, 0, True)
    _assert_imported(ids, OLD_ROWS)
    _assert_all_envelope_v1()
    assert ImportedRecord.objects.get(email="ADA@example.org").pk == ids[0]
    event = AuditEvent.objects.get(id__gt=start, action="key.import_djcrypto")
    assert event.details["written"] == 10 and event.details["model"] == "keys_tests.ImportedRecord"

    stored = _raw(LEGACY_TABLE, LEGACY_FIELDS)
    again = import_djcrypto(ImportedRecord, LEGACY_FIELDS, batch=3)
    assert (again.values_written, again.values_skipped) == (0, 10)
    assert _raw(LEGACY_TABLE, LEGACY_FIELDS) == stored


@pytest.mark.parametrize(
    ("old_settings", "key_material"),
    [
        ({"SECRET_KEY": OLD_SECRET}, {"secret_key": OLD_SECRET}),
        (
            {"SECRET_KEY": OLD_SECRET, "CRYPTOGRAPHY_KEY": OLD_CRYPTOGRAPHY_KEY, "CRYPTOGRAPHY_SALT": "old-salt"},
            {"secret_key": OLD_SECRET.encode(), "cryptography_key": OLD_CRYPTOGRAPHY_KEY, "salt": "old-salt"},
        ),
    ],
    ids=["secret-key", "cryptography-key-and-salt"],
)
def test_imports_an_old_apps_values_with_its_key_material(
    old_settings: dict[str, str], key_material: dict[str, Any]
) -> None:
    ids = _insert_legacy(_old_app(OLD_ROWS, **old_settings))

    counts = import_djcrypto(ImportedRecord, LEGACY_FIELDS, batch=2, **key_material)

    assert counts.values_written == 10 and counts.complete
    _assert_imported(ids, OLD_ROWS)
    _assert_all_envelope_v1()


@pytest.mark.parametrize(
    ("key_material", "error", "says"),
    [
        ({"secret_key": "not-the-old-secret"}, AuthenticationError, "failed authentication under the given SECRET_KEY"),
        ({"secret_key": OLD_SECRET}, DecryptionError, "wrong CRYPTOGRAPHY_KEY or salt"),
        ({"secret_key": OLD_SECRET, "cryptography_key": OLD_CRYPTOGRAPHY_KEY}, DecryptionError, "CRYPTOGRAPHY_KEY"),
        (
            {"secret_key": "wrong", "cryptography_key": OLD_CRYPTOGRAPHY_KEY, "salt": "old-salt"},
            AuthenticationError,
            "SECRET_KEY",
        ),
    ],
    ids=["wrong-secret", "missing-cryptography-key", "wrong-salt", "right-cryptography-key-wrong-secret"],
)
def test_wrong_old_key_material_stops_naming_the_row_and_writes_nothing(
    key_material: dict[str, Any], error: type[Exception], says: str
) -> None:
    old = {"SECRET_KEY": OLD_SECRET, "CRYPTOGRAPHY_KEY": OLD_CRYPTOGRAPHY_KEY, "CRYPTOGRAPHY_SALT": "old-salt"}
    ids = _insert_legacy(_old_app(OLD_ROWS[:3], **old))
    before = _raw(LEGACY_TABLE, LEGACY_FIELDS)

    with pytest.raises(error) as caught:
        import_djcrypto(ImportedRecord, LEGACY_FIELDS, batch=10, **key_material)

    message = str(caught.value)
    assert says in message and "cannot decrypt keys_tests.ImportedRecord." in message
    assert f" of row {min(ids)}: " in message  # the first row in primary-key order
    assert "Ada" not in message and "1815" not in message
    assert _raw(LEGACY_TABLE, LEGACY_FIELDS) == before


def test_a_bad_value_rolls_back_only_its_batch_and_a_rerun_continues() -> None:
    ids = sorted(uuid.uuid4() for _ in range(6))
    rows = [{**OLD_ROWS[0], "name": f"Person {i}"} for i in range(6)]
    stored = _old_app(rows, SECRET_KEY=OLD_SECRET)
    stored[4] = _old_app(rows[4:5], SECRET_KEY="some-other-app")[0]  # a value this key did not write
    _insert_legacy(stored, ids)

    with pytest.raises(AuthenticationError, match=str(ids[4])):
        import_djcrypto(ImportedRecord, LEGACY_FIELDS, secret_key=OLD_SECRET, batch=3)

    raw = _raw(LEGACY_TABLE, ["name"])
    assert [raw[pk][0][0] for pk in ids] == [1, 1, 1, 0x80, 0x80, 0x80]  # batch 1 done, batch 2 untouched
    with connection.cursor() as cursor:  # the operator deals with the foreign row, then reruns
        cursor.execute(f"DELETE FROM {LEGACY_TABLE} WHERE id = %s", [ids[4]])
    counts = import_djcrypto(ImportedRecord, LEGACY_FIELDS, secret_key=OLD_SECRET, batch=3)
    assert (counts.values_written, counts.values_skipped) == (8, 12)
    _assert_imported(ids[:4] + ids[5:], rows[:4] + rows[5:])


@pytest.mark.parametrize("where", ["version", "timestamp", "iv", "ciphertext", "hmac", "truncated"])
def test_an_altered_token_is_refused_before_anything_is_unpickled(where: str, monkeypatch: pytest.MonkeyPatch) -> None:
    token = _old_app(OLD_ROWS[:1], SECRET_KEY=OLD_SECRET)[0]["name"]
    assert token is not None
    key = djcrypto.OldKey(OLD_SECRET)
    assert key.open(token) == (djcrypto.Outcome.OK, "Ada Lovelace ✓")
    offset = {"version": 0, "timestamp": 5, "iv": 12, "ciphertext": 30, "hmac": len(token) - 1}.get(where)
    altered = token[:-16] if offset is None else token[:offset] + bytes([token[offset] ^ 1]) + token[offset + 1 :]
    unpickled: list[bytes] = []
    monkeypatch.setattr(djcrypto.pickle, "loads", unpickled.append)

    assert key.open(altered) == (djcrypto.Outcome.FORGED, None)
    assert unpickled == []


def test_values_already_in_envelope_v1_are_skipped_and_anything_else_is_refused() -> None:
    ours = ImportedRecord.objects.create(name="Already ours", visits=1)
    theirs = LegacyRecord.objects.create(name="Still theirs", visits=2)
    ours_stored = _raw(LEGACY_TABLE, LEGACY_FIELDS)[ours.pk]

    counts = import_djcrypto(ImportedRecord, ["name", "visits"])

    assert (counts.values_written, counts.values_skipped) == (2, 2)
    assert _raw(LEGACY_TABLE, LEGACY_FIELDS)[ours.pk] == ours_stored
    assert ImportedRecord.objects.get(pk=theirs.pk).name == "Still theirs"
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {LEGACY_TABLE} SET visits = %s WHERE id = %s", [b"plaintext 12345", theirs.pk])
    with pytest.raises(AuthenticationError, match="neither a django-cryptography token nor envelope v1") as caught:
        import_djcrypto(ImportedRecord, ["name", "visits"])
    assert f"keys_tests.ImportedRecord.visits of row {theirs.pk}" in str(caught.value)
    assert "12345" not in str(caught.value)


def test_a_value_that_only_looks_like_envelope_v1_is_refused_not_skipped() -> None:
    """First byte 0x01 and 33+ bytes is the envelope's shape, not proof: only a value that
    opens under our keys (for this field and row) is already imported."""
    theirs = LegacyRecord.objects.create(name="Still theirs", visits=2)
    lookalike = bytes([1]) + (1).to_bytes(4, "big") + os.urandom(40)  # names key 1, opens under nothing
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {LEGACY_TABLE} SET visits = %s WHERE id = %s", [lookalike, theirs.pk])
    with pytest.raises(AuthenticationError, match="neither a django-cryptography token nor envelope v1") as caught:
        import_djcrypto(ImportedRecord, ["name", "visits"])
    assert f"keys_tests.ImportedRecord.visits of row {theirs.pk}" in str(caught.value)
    assert _raw(LEGACY_TABLE, ["visits"])[theirs.pk] == (lookalike,), "nothing of the batch was written"


def test_the_online_route_reads_a_django_cryptography_column_through_its_field() -> None:
    values = [_expected(row) for row in OLD_ROWS]
    ids = [LegacyRecord.objects.create(**v).pk for v in values]
    state = ProjectState()
    state.add_model(ModelState.from_model(LegacyRecord))  # historical model, as in a migration

    with connection.schema_editor() as editor:
        EncryptColumn("legacyrecord", "name", "name_enc", batch=2).database_forwards("keys_tests", editor, state, state)

    for pk, value in zip(ids, values, strict=True):
        assert LegacyRecord.objects.get(pk=pk).name_enc == value["name"]
    recheck = encrypt_plaintext_column(LegacyRecord, source_column="name", field_name="name_enc", recheck=True)
    assert (recheck.rows_scanned, recheck.values_repaired) == (3, 0)


# -- committed: real batch transactions and the envelope CHECK ----------------------------


def _finish_sql(field: str, backwards: bool = False) -> list[str]:
    model_state = ModelState.from_model(ImportedRecord)
    model_state.options.pop("managed")  # in the real app the switched model is managed
    state = ProjectState()
    state.add_model(model_state)
    operation = FinishInPlaceImport("importedrecord", field)
    with connection.schema_editor(collect_sql=True, atomic=False) as editor:
        run = operation.database_backwards if backwards else operation.database_forwards
        run("keys_tests", editor, state, state)
    return list(editor.collected_sql)


@pytest.fixture
def committed_legacy_rows(owner_cursor: Any) -> Iterator[Any]:
    owner_cursor.execute("SET lock_timeout = '10s'")
    yield owner_cursor
    for field in LEGACY_FIELDS:
        for statement in _finish_sql(field, backwards=True):
            owner_cursor.execute(statement)
    owner_cursor.execute(f"DELETE FROM {LEGACY_TABLE}")


def _insert_committed(stored: list[dict[str, bytes | None]]) -> list[uuid.UUID]:
    return _insert_legacy(stored)


def test_the_envelope_check_goes_on_once_every_value_is_imported(committed_legacy_rows: Any) -> None:
    """Committed data (other connections, as the app role), so the owner can add the CHECK."""
    owner = committed_legacy_rows
    ids = in_thread(_insert_committed, _old_app(OLD_ROWS, SECRET_KEY=OLD_SECRET))
    finish = {field: _finish_sql(field) for field in LEGACY_FIELDS}
    assert "CHECK (octet_length" in finish["name"][0] and len(finish["name"]) == 1
    # Searchable too, yet only the CHECK: its index is the model's search_index (Meta.indexes).
    assert "CHECK (octet_length" in finish["email"][0] and len(finish["email"]) == 1

    with pytest.raises(psycopg.errors.CheckViolation):
        owner.execute(finish["name"][0])  # django-cryptography values are not envelopes
    counts = in_thread(import_djcrypto, ImportedRecord, LEGACY_FIELDS, secret_key=OLD_SECRET, batch=1)
    assert counts.batches == 4 and counts.complete
    for statements in finish.values():
        for statement in statements:
            owner.execute(statement)  # PostgreSQL validates every committed row

    owner.execute(
        "SELECT count(*) FROM pg_constraint WHERE conrelid = %s::regclass AND conname LIKE '%%envelope_check'",
        [LEGACY_TABLE],
    )
    assert owner.fetchone() == (4,)
    # No B-tree over the whole ciphertext any more: a searchable field's index is its model's
    # search_probe() column (tests/keys/test_search_probes.py).
    owner.execute("SELECT indexdef FROM pg_indexes WHERE tablename = %s AND indexdef LIKE '%%(email)'", [LEGACY_TABLE])
    assert owner.fetchall() == []
    with pytest.raises(psycopg.errors.CheckViolation):
        owner.execute(f"UPDATE {LEGACY_TABLE} SET visits = %s", [b"plaintext"])

    owner.execute(f"SELECT count(*) FROM {LEGACY_TABLE} WHERE get_byte(name, 0) = 1")
    assert owner.fetchone() == (3,)
    in_thread(_assert_imported, ids, OLD_ROWS)  # this test's own transaction must not lock the table


def test_the_operator_command_imports_with_the_old_secret_key_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from io import StringIO

    from django.core.management import call_command

    from keys import migrate_in

    real = migrate_in.import_djcrypto
    # The test model's app is not installed, so the command cannot look it up by name.
    monkeypatch.setattr(
        migrate_in,
        "import_djcrypto",
        lambda model, *a, **kw: real(ImportedRecord if model == "tests.Imported" else model, *a, **kw),
    )

    ids = sorted(uuid.uuid4() for _ in OLD_ROWS)
    _insert_legacy(_old_app(OLD_ROWS, SECRET_KEY=OLD_SECRET), ids)
    secret = tmp_path / "old-secret-key"
    secret.write_text(OLD_SECRET + "\n")
    out = StringIO()

    call_command(
        "keys",
        "import-djcrypto",
        "--model",
        "tests.Imported",
        *[arg for name in LEGACY_FIELDS for arg in ("--field", name)],
        "--secret-key-file",
        str(secret),
        "--batch",
        "4",
        stdout=out,
    )

    assert "10" in out.getvalue()
    _assert_imported(ids, OLD_ROWS)
    _assert_all_envelope_v1()
