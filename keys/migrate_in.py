"""Bring existing data under envelope v1, online: plaintext columns and django-cryptography values.

Guarantees:

* Both jobs walk a table in primary-key order, in batches. Each batch is one transaction,
  under the system identity (row-level security hides nothing), that locks its rows with
  ``SELECT ... FOR UPDATE`` before reading them: a concurrent write either commits first and
  is what the batch reads, or waits for the batch and then wins. The job never writes a value
  it read before someone else changed it.
* Resumable without a checkpoint table: the work left is visible in the rows themselves (the
  encrypted column still NULL; a value not yet in envelope v1). A run that is killed, stopped
  by ``max_batches`` or by an exception loses at most its batch in flight; the next run
  continues, and a run with nothing left to do writes nothing.
* ``encrypt_plaintext_column`` writes only the encrypted column. The plaintext column keeps
  every value, so code that still reads it never sees ciphertext or a gap (the whole pattern
  is in docs/migrating-in.md).
* ``import_djcrypto`` unpickles a django-cryptography value only after its HMAC-SHA256
  verified under the operator-supplied old SECRET_KEY. A value that does not verify stops the
  run with a ``DecryptionError`` naming model, field and row, and nothing of its batch is
  written.
* Messages and audit details name models, fields, rows and counts, never a value.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.exceptions import FieldDoesNotExist, ValidationError
from django.db import DEFAULT_DB_ALIAS, connection, models, transaction
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.backends.utils import truncate_name
from django.db.migrations.operations.base import Operation, OperationCategory
from django.db.migrations.state import ProjectState

from keys import djcrypto, envelope
from keys.conf import keys_settings
from keys.exceptions import AuthenticationError, DecryptionError, EncryptionError, KeysError
from keys.fields import INDEX_PREFIX_SIZE, EncryptedMixin
from keys.signals import key_event

_NIL = uuid.UUID(int=0)

Model = type[models.Model]


@dataclass
class MigrationCounts:
    """What one run did. ``complete`` is False when ``max_batches`` stopped it first."""

    model: str
    fields: tuple[str, ...]
    batches: int = 0
    rows_scanned: int = 0
    values_written: int = 0
    values_skipped: int = 0
    values_repaired: int = 0
    complete: bool = False

    def summary(self) -> str:
        state = "complete" if self.complete else "stopped early, run again to continue"
        return (
            f"{self.model} ({', '.join(self.fields)}): {self.rows_scanned} rows in {self.batches} batches, "
            f"{self.values_written} values encrypted, {self.values_skipped} already envelope v1, "
            f"{self.values_repaired} repaired; {state}."
        )


Progress = Callable[[MigrationCounts], None]
Converter = Callable[[list[tuple[Any, ...]], "_Tally"], list[list[Any]]]


@dataclass
class _Tally:
    """One batch's counts, added to the run's only once the batch has committed."""

    written: int = 0
    skipped: int = 0
    repaired: int = 0


@dataclass
class _Job:
    model: Model
    read: list[str]  # columns after the primary key, in the order ``convert`` receives them
    write: list[str]  # columns ``convert`` returns new values for
    pending: str  # SQL condition: rows that may still need work
    convert: Converter  # (locked rows, tally) -> [pk, *new values] for the rows to write
    reason: str


def encrypt_plaintext_column(
    model: Model | str,
    *,
    source_column: str,
    field_name: str,
    batch: int = 500,
    progress: Progress | None = None,
    max_batches: int | None = None,
    recheck: bool = False,
) -> MigrationCounts:
    """Encrypt each row's ``source_column`` value into the nullable encrypted field ``field_name``.

    Works on rows whose encrypted column is NULL and whose plaintext is not, so a rerun
    continues where the last one stopped. ``recheck=True`` also reads every encrypted value
    and repairs any that no longer matches its plaintext (a writer that updated only the
    plaintext), and clears ciphertext whose plaintext became NULL: run it once before reads
    switch to the encrypted field. ``progress(counts)`` is called after each committed batch
    (raising in it stops the run). Raises KeysError for bad arguments and EncryptionError,
    naming the row, for a plaintext value the field cannot hold.
    """
    model = _resolve(model)
    target = _encrypted_field(model, field_name)
    if not target.null:
        raise KeysError(f"{target.label}: add the encrypted field with null=True; its NULLs mark the rows to do")
    _check_column(model, source_column, target)
    job = _Job(
        model=model,
        read=[source_column, str(target.column)],
        write=[str(target.column)],
        pending=_pending_plaintext(source_column, str(target.column), recheck),
        convert=_plaintext_converter(model, target, source_column),
        reason="encrypt a plaintext column",
    )
    return _run_audited(job, (target.name,), "key.encrypt_column", batch, progress, max_batches)


def import_djcrypto(
    model: Model | str,
    field_names: Sequence[str],
    *,
    secret_key: str | bytes | None = None,
    cryptography_key: str | bytes | None = None,
    salt: str | bytes | None = None,
    batch: int = 500,
    progress: Progress | None = None,
    max_batches: int | None = None,
) -> MigrationCounts:
    """Re-encrypt django-cryptography values of ``field_names`` (now encrypted fields) into envelope v1, in place.

    ``model`` is a model class or ``"app_label.ModelName"``. The old app's key material:
    ``secret_key`` is its SECRET_KEY (default: the current one), which keys the HMAC of
    every value; ``cryptography_key`` its CRYPTOGRAPHY_KEY if it set one (the AES key is
    PBKDF2-SHA256 of it, or of the SECRET_KEY, salted with ``salt``, default
    ``"django-cryptography"``). Values already in envelope v1 and NULLs are skipped, so a
    rerun is a no-op. Values written by fields with their own ``key=`` are not supported.

    django-cryptography pickles values, and unpickling untrusted bytes runs code. Each token
    is HMAC-verified with the operator-supplied SECRET_KEY before it is decrypted and
    unpickled, so only bytes the old app itself wrote are ever unpickled.

    Raises ``AuthenticationError`` (a DecryptionError) naming model, field and row when a
    value does not verify under ``secret_key`` or is in neither format, ``DecryptionError``
    when it verifies but does not decrypt (wrong ``cryptography_key`` or ``salt``); nothing
    of that batch is written. Raises KeysError for bad arguments.
    """
    model = _resolve(model)
    fields = [_encrypted_field(model, name) for name in dict.fromkeys(field_names)]
    if not fields:
        raise KeysError("name at least one field to import")
    try:
        old_key = djcrypto.OldKey(settings.SECRET_KEY if secret_key is None else secret_key, cryptography_key, salt)
    except ValueError as exc:
        raise KeysError(str(exc)) from None
    job = _Job(
        model=model,
        read=[str(f.column) for f in fields],
        write=[str(f.column) for f in fields],
        pending="TRUE",
        convert=_djcrypto_converter(model, fields, old_key),
        reason="import django-cryptography values",
    )
    return _run_audited(job, tuple(f.name for f in fields), "key.import_djcrypto", batch, progress, max_batches)


# -- the batch loop ---------------------------------------------------------------------


def _run_audited(
    job: _Job, names: tuple[str, ...], action: str, batch: int, progress: Progress | None, max_batches: int | None
) -> MigrationCounts:
    if not 1 <= batch <= 10_000:
        raise KeysError("batch must be between 1 and 10000 rows")
    counts = MigrationCounts(model=job.model._meta.label, fields=names)
    details: dict[str, Any] = {"model": counts.model, "fields": list(names)}
    try:
        _run(job, counts, batch, progress, max_batches)
    except KeysError as exc:
        details["error"] = type(exc).__name__
        key_event.send(__name__, action=action, outcome="error", key_id=None, purpose="field", details=details)
        raise
    if counts.values_written or counts.values_repaired:
        details.update(written=counts.values_written, repaired=counts.values_repaired, complete=counts.complete)
        key_event.send(__name__, action=action, outcome="success", key_id=None, purpose="field", details=details)
    return counts


def _run(job: _Job, counts: MigrationCounts, batch: int, progress: Progress | None, max_batches: int | None) -> None:
    qn = connection.ops.quote_name
    table, pk = qn(job.model._meta.db_table), qn(str(job.model._meta.pk.column))
    columns = ", ".join(qn(c) for c in job.read)
    select = (
        f"SELECT {pk}, {columns} FROM {table} WHERE {pk} {{op}} %s AND ({job.pending}) "  # noqa: S608 - quoted names
        f"ORDER BY {pk} LIMIT %s FOR UPDATE"
    )
    update = _update_sql(table, pk, [qn(c) for c in job.write])
    last = None
    while max_batches is None or counts.batches < max_batches:
        tally = _Tally()
        with keys_settings.SYSTEM_CONTEXT(job.reason), transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(select.format(op=">=" if last is None else ">"), [last or _NIL, batch])
                rows = cursor.fetchall()
            if not rows:
                counts.complete = True
                return
            changed = job.convert(rows, tally)
            if changed:
                with connection.cursor() as cursor:
                    cursor.execute(update, [list(column) for column in zip(*changed, strict=True)])
        last = rows[-1][0]
        counts.batches += 1
        counts.rows_scanned += len(rows)
        counts.values_written += tally.written
        counts.values_skipped += tally.skipped
        counts.values_repaired += tally.repaired
        if progress is not None:
            progress(counts)


def _update_sql(table: str, pk: str, columns: list[str]) -> str:
    assignments = ", ".join(f"{column} = v.c{i}" for i, column in enumerate(columns))
    casts = ", ".join(["%s::uuid[]"] + ["%s::bytea[]"] * len(columns))
    names = ", ".join(["id"] + [f"c{i}" for i in range(len(columns))])
    return f"UPDATE {table} AS t SET {assignments} FROM unnest({casts}) AS v({names}) WHERE t.{pk} = v.id"  # noqa: S608


# -- plaintext -> envelope v1 -----------------------------------------------------------


def _pending_plaintext(source: str, target: str, recheck: bool) -> str:
    qn = connection.ops.quote_name
    if recheck:
        return f"{qn(source)} IS NOT NULL OR {qn(target)} IS NOT NULL"
    return f"{qn(target)} IS NULL AND {qn(source)} IS NOT NULL"


def _plaintext_converter(model: Model, target: EncryptedMixin, source_column: str) -> Converter:
    read = _source_reader(model, source_column)
    where = f"{model._meta.label}.{target.name}"

    def convert(rows: list[tuple[Any, ...]], tally: _Tally) -> list[list[Any]]:
        out: list[list[Any]] = []
        for pk, raw, token in rows:
            data: dict[str, Any] = {target.pk_attname: pk}
            value = None if raw is None else read(raw)
            if token is None:
                if value is not None:
                    out.append([pk, _seal(target, value, pk, data, where)])
                    tally.written += 1
            elif _stale(target, value, bytes(token), pk, data, where):  # only with recheck
                out.append([pk, None if value is None else _seal(target, value, pk, data, where)])
                tally.repaired += 1
        return out

    return convert


def _stale(target: EncryptedMixin, value: Any, token: bytes, pk: Any, data: dict[str, Any], where: str) -> bool:
    """The stored ciphertext no longer says what the plaintext column says."""
    if value is None:
        return True
    return _encode(target, target.open_value(data, token, pk), pk, where) != _encode(target, value, pk, where)


def _source_reader(model: Model, column: str) -> Callable[[Any], Any]:
    """Turn a raw column value into what the plaintext field would return (e.g. JSON text -> dict)."""
    plain = [f for f in model._meta.concrete_fields if f.column == column and not isinstance(f, EncryptedMixin)]
    if not plain:
        return lambda value: value
    converters = plain[0].get_db_converters(connection)
    expression = plain[0].get_col(model._meta.db_table)

    def read(value: Any) -> Any:
        for converter in converters:
            value = converter(value, expression, connection)
        return value

    return read


def _encode(target: EncryptedMixin, value: Any, pk: Any, where: str) -> bytes:
    try:
        return target.encode(value)
    except (ValidationError, TypeError, ValueError, ArithmeticError):
        raise _unfit(target, pk, where) from None


def _seal(target: EncryptedMixin, value: Any, pk: Any, data: dict[str, Any], where: str) -> bytes:
    try:
        return target.seal_value(value, pk, data)
    except (ValidationError, TypeError, ValueError, ArithmeticError):
        # The original message may quote the value (e.g. an invalid date): drop it.
        raise _unfit(target, pk, where) from None


def _unfit(target: EncryptedMixin, pk: Any, where: str) -> EncryptionError:
    return EncryptionError(
        f"cannot encrypt {where} of row {pk}: the value is not a valid {target.python_type_name} for this field"
    )


# -- django-cryptography -> envelope v1 -------------------------------------------------


def _looks_envelope(target: EncryptedMixin, token: bytes) -> bool:
    offset = INDEX_PREFIX_SIZE if target.search else 0
    return len(token) >= offset + envelope.OVERHEAD and token[offset] == envelope.VERSION


def _already_envelope(target: EncryptedMixin, token: bytes, data: dict[str, Any], pk: Any) -> bool:
    """Really envelope v1 of this field and row: it opens under our keys. The shape alone
    (first byte 0x01, long enough) is no proof, and skipping on it would leave a value that
    is neither format in place, reported as imported."""
    if not _looks_envelope(target, token):
        return False
    try:
        target.open_value(data, token, pk)
    except DecryptionError:
        return False
    return True


def _djcrypto_converter(model: Model, fields: list[EncryptedMixin], old_key: djcrypto.OldKey) -> Converter:
    label = model._meta.label

    def convert(rows: list[tuple[Any, ...]], tally: _Tally) -> list[list[Any]]:
        out: list[list[Any]] = []
        for row in rows:
            pk, values = row[0], [None if v is None else bytes(v) for v in row[1:]]
            data: dict[str, Any] = {fields[0].pk_attname: pk}
            dirty = False
            for i, target in enumerate(fields):
                token = values[i]
                if token is None:
                    continue
                outcome, value = old_key.open(token) if djcrypto.looks_like_token(token) else (None, None)
                if outcome is not djcrypto.Outcome.OK:
                    if _already_envelope(target, token, data, pk):
                        tally.skipped += 1
                        continue
                    raise _import_error(outcome, f"{label}.{target.name} of row {pk}")
                values[i] = _seal(target, value, pk, data, f"{label}.{target.name}")
                tally.written += 1
                dirty = True
            if dirty:
                out.append([pk, *values])
        return out

    return convert


def _import_error(outcome: djcrypto.Outcome | None, where: str) -> DecryptionError:
    rest = "; nothing of this batch was written (earlier batches are imported; rerun with the right key to continue)"
    if outcome is djcrypto.Outcome.FORGED:
        reason = "the django-cryptography value failed authentication under the given SECRET_KEY (wrong key or altered)"
        return AuthenticationError(reason + rest, where=where)
    if outcome is djcrypto.Outcome.GARBLED:
        reason = "the django-cryptography value authenticated but did not decrypt: wrong CRYPTOGRAPHY_KEY or salt"
        return DecryptionError(reason + rest, where=where)
    return AuthenticationError("the value is neither a django-cryptography token nor envelope v1" + rest, where=where)


# -- shared checks ----------------------------------------------------------------------


def _resolve(model: Model | str) -> Model:
    if isinstance(model, str):
        try:
            return apps.get_model(model)
        except (LookupError, ValueError):
            raise KeysError(f"no model {model!r} (expected 'app_label.ModelName')") from None
    return model


def _encrypted_field(model: Model, name: str) -> EncryptedMixin:
    try:
        found = model._meta.get_field(name)
    except FieldDoesNotExist:
        raise KeysError(f"{model._meta.label} has no field {name!r}") from None
    if not isinstance(found, EncryptedMixin):
        raise KeysError(f"{model._meta.label}.{name} is not an encrypted field (keys.fields.Encrypted*)")
    return found


def _check_column(model: Model, column: str, target: EncryptedMixin) -> None:
    if column == target.column:
        raise KeysError(f"{target.label}: the source column must not be the encrypted column itself")
    with connection.cursor() as cursor:
        described = connection.introspection.get_table_description(cursor, model._meta.db_table)
    if column not in {c.name for c in described}:
        raise KeysError(f"table {model._meta.db_table} has no column {column!r}")


# -- migration operations ---------------------------------------------------------------


class EncryptColumn(Operation):
    """Migration operation: encrypt plaintext ``source`` (a field or column name) into the
    encrypted field ``target`` with :func:`encrypt_plaintext_column`.

    Put it in a migration with ``atomic = False`` so each batch commits on its own (online;
    an interrupted ``migrate`` continues where it stopped); depend on the keys app's latest
    migration. Reversing clears the encrypted column: the plaintext column still holds every
    value until a later migration drops it.
    """

    reversible = True
    reduces_to_sql = False
    category = OperationCategory.PYTHON

    def __init__(self, model_name: str, source: str, target: str, batch: int = 500) -> None:
        self.model_name, self.source, self.target, self.batch = model_name, source, target, batch

    def state_forwards(self, app_label: str, state: ProjectState) -> None:
        pass  # data only

    def database_forwards(
        self, app_label: str, schema_editor: BaseDatabaseSchemaEditor, from_state: ProjectState, to_state: ProjectState
    ) -> None:
        model = to_state.apps.get_model(app_label, self.model_name)
        if self._applies(schema_editor, model):
            encrypt_plaintext_column(
                model, source_column=_column_of(model, self.source), field_name=self.target, batch=self.batch
            )

    def database_backwards(
        self, app_label: str, schema_editor: BaseDatabaseSchemaEditor, from_state: ProjectState, to_state: ProjectState
    ) -> None:
        model = from_state.apps.get_model(app_label, self.model_name)
        if self._applies(schema_editor, model):
            qn = connection.ops.quote_name
            column = qn(str(_encrypted_field(model, self.target).column))
            with keys_settings.SYSTEM_CONTEXT("clear an encrypted column"), connection.cursor() as cursor:
                cursor.execute(f"UPDATE {qn(model._meta.db_table)} SET {column} = NULL WHERE {column} IS NOT NULL")  # noqa: S608

    def _applies(self, schema_editor: BaseDatabaseSchemaEditor, model: Model) -> bool:
        if not self.allow_migrate_model(schema_editor.connection.alias, model):
            return False
        if schema_editor.connection.alias != DEFAULT_DB_ALIAS:
            raise KeysError("EncryptColumn runs on the default database only")
        return True

    def describe(self) -> str:
        return f"Encrypt {self.model_name}.{self.source} into {self.target}"

    @property
    def migration_name_fragment(self) -> str:
        return f"encrypt_{self.model_name.lower()}_{self.target.lower()}"


class FinishInPlaceImport(Operation):
    """Migration operation: the database half of switching a field to ``keys.fields`` in place.

    An ``AlterField`` from django-cryptography would add the envelope CHECK constraint, which
    the old values fail, so the switch is made state-only (``SeparateDatabaseAndState``) and
    ``import_djcrypto`` rewrites the values. This operation then adds what the switch left out:
    the CHECK constraint. (A searchable field's index is the model's own ``search_index``, in
    ``Meta.indexes``, which makemigrations adds like any index.) PostgreSQL validates every
    row when adding the CHECK, so this migration fails, changing nothing, while any value is
    not yet envelope v1.
    """

    reversible = True
    reduces_to_sql = True
    category = OperationCategory.ADDITION

    def __init__(self, model_name: str, field_name: str) -> None:
        self.model_name, self.field_name = model_name, field_name

    def state_forwards(self, app_label: str, state: ProjectState) -> None:
        pass  # the state already has the encrypted field

    def database_forwards(
        self, app_label: str, schema_editor: BaseDatabaseSchemaEditor, from_state: ProjectState, to_state: ProjectState
    ) -> None:
        model = to_state.apps.get_model(app_label, self.model_name)
        if self.allow_migrate_model(schema_editor.connection.alias, model):
            target, table, check_name = self._names(schema_editor, model)
            check = target.db_check(schema_editor.connection)
            schema_editor.execute(schema_editor.sql_create_check % {"table": table, "name": check_name, "check": check})

    def database_backwards(
        self, app_label: str, schema_editor: BaseDatabaseSchemaEditor, from_state: ProjectState, to_state: ProjectState
    ) -> None:
        model = from_state.apps.get_model(app_label, self.model_name)
        if self.allow_migrate_model(schema_editor.connection.alias, model):
            _target, table, check_name = self._names(schema_editor, model)
            schema_editor.execute(f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {check_name}")

    def _names(self, schema_editor: BaseDatabaseSchemaEditor, model: Model) -> tuple[EncryptedMixin, str, str]:
        target = _encrypted_field(model, self.field_name)
        base, limit = f"{model._meta.db_table}_{target.column}", schema_editor.connection.ops.max_name_length()
        return (
            target,
            schema_editor.quote_name(model._meta.db_table),
            schema_editor.quote_name(truncate_name(f"{base}_envelope_check", limit)),
        )

    def describe(self) -> str:
        return f"Add the envelope check to {self.model_name}.{self.field_name}"

    @property
    def migration_name_fragment(self) -> str:
        return f"finish_import_{self.model_name.lower()}_{self.field_name.lower()}"


def _column_of(model: Model, name: str) -> str:
    """The column of field ``name``, or ``name`` itself when no field has that name."""
    try:
        found = model._meta.get_field(name)
    except FieldDoesNotExist:
        return name
    return str(getattr(found, "column", None) or name)
