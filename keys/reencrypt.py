"""Online, resumable re-encryption: move every stored value onto the active keys.

Guarantees:

* Every model with encrypted fields is found through the field registry
  (``keys.fields.encrypted_fields``), not a list kept by hand.
* Rows are processed in primary-key order, in batches; each batch is one transaction that
  locks its rows (``FOR UPDATE``: a user's concurrent write waits and is never overwritten
  with stale data, nor does the job write over it), re-encrypts the values whose field key
  or blind-index key is not the active one, and advances the checkpoint row
  (``ReencryptionJob``) in the same transaction. Killing the process at any point loses at
  most the batch in flight, which the next run redoes.
* The job runs with a system identity (row-level security would hide rows otherwise).
* Every batch first locks its job row and the active key of its purpose and stops unless
  the job is still ``running`` and its target is still the active key: a job superseded by
  a newer rotation (or a newer worker) never moves a value back to an older key, and never
  becomes ``done``. Workers resuming the same job share its checkpoint.
* Values under a *destroyed* key (crypto-shredded on purpose) cannot be moved: they are
  skipped, counted (``values_unreadable``) and reported, and the job goes on to finish.
* A job that fails records why (``failed`` with the error's type and safe message) and the
  failure is audited (``key.reencrypt_failed``); it never stays ``running`` silently.
* Sealed models (``keys.integrity``) are re-sealed row by row in the same locked batch:
  every value, the row version and the row seal, so legacy rows are upgraded too.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django.apps import apps
from django.db import connection, models, transaction
from django.utils import timezone

from keys import envelope
from keys.conf import keys_settings
from keys.exceptions import KeysError
from keys.fields import INDEX_PREFIX_SIZE, EncryptedMixin, encrypted_fields
from keys.integrity import has_row_integrity, resealed_rows
from keys.keyring import keyring
from keys.models import DataKey, ReencryptionJob
from keys.signals import key_event

Progress = Callable[[ReencryptionJob, float], None]


def models_to_reencrypt(purpose: str) -> list[tuple[type[models.Model], list[EncryptedMixin]]]:
    """(model, fields) for every model holding values of ``purpose`` (field or index)."""
    found = []
    for model in apps.get_models():
        fields = [f for f in encrypted_fields(model) if purpose == "field" or f.search]
        if fields and model._meta.managed:
            found.append((model, fields))
    return found


@dataclass
class _Targets:
    field_header: bytes
    index_prefix: bytes
    destroyed: frozenset[bytes] = frozenset()  # envelope headers of destroyed field keys


def _targets() -> _Targets:
    keyring.clear()
    field_key = keyring.active("field")
    destroyed = DataKey.objects.filter(purpose=DataKey.Purpose.FIELD, status=DataKey.Status.DESTROYED)
    headers = frozenset(envelope.header_for(pk) for pk in destroyed.values_list("pk", flat=True))
    return _Targets(field_key.header, keyring.index_keys()[0].prefix, headers)


def _under_destroyed_key(field: EncryptedMixin, token: bytes, targets: _Targets) -> bool:
    offset = INDEX_PREFIX_SIZE if field.search else 0
    return token[offset : offset + envelope.HEADER_SIZE] in targets.destroyed


def _stale(field: EncryptedMixin, token: bytes, targets: _Targets) -> bool:
    if field.search:
        return (
            token[:4] != targets.index_prefix
            or token[INDEX_PREFIX_SIZE : INDEX_PREFIX_SIZE + 5] != targets.field_header
        )
    return token[: envelope.HEADER_SIZE] != targets.field_header


def select_models(
    purpose: str, labels: Collection[str] | None
) -> list[tuple[type[models.Model], list[EncryptedMixin]]]:
    """:func:`models_to_reencrypt`, only those named in ``labels`` (``app_label.Model``, any case)
    when given. Raises KeysError for a label that holds no values of ``purpose``."""
    found = models_to_reencrypt(purpose)
    if labels is None:
        return found
    wanted = {label.lower() for label in labels}
    unknown = wanted - {model._meta.label_lower for model, _ in found}
    if unknown:
        known = ", ".join(model._meta.label for model, _ in found)
        raise KeysError(f"no {purpose} values to re-encrypt in {', '.join(sorted(unknown))}; models: {known}")
    return [(model, fields) for model, fields in found if model._meta.label_lower in wanted]


def parallel_groups(purpose: str, workers: int, labels: Collection[str] | None = None) -> list[list[str]]:
    """The models of ``purpose`` split into at most ``workers`` groups of about equal size (by
    the planner's row estimate, no scan): one ``reencrypt(labels=group)`` process per group
    keeps every core busy, each job in one process only."""
    if workers < 1:
        raise KeysError("--parallel must be at least 1")
    sizes = []
    with connection.cursor() as cursor:
        for model, _ in select_models(purpose, labels):
            cursor.execute("SELECT reltuples FROM pg_class WHERE oid = %s::regclass", [model._meta.db_table])
            row = cursor.fetchone()
            sizes.append((max(float(row[0]) if row else 0.0, 0.0), model._meta.label))
    totals = [0.0] * min(workers, len(sizes))
    groups: list[list[str]] = [[] for _ in totals]
    for size, label in sorted(sizes, reverse=True):  # largest first, each onto the lightest group
        lightest = min(range(len(totals)), key=lambda i: (totals[i], len(groups[i])))
        totals[lightest] += size
        groups[lightest].append(label)
    return groups


def reencrypt(
    purpose: str = "field",
    *,
    batch: int = 500,
    progress: Progress | None = None,
    max_batches: int | None = None,
    labels: Collection[str] | None = None,
) -> list[ReencryptionJob]:
    """Re-encrypt every value not under the active keys; resume unfinished jobs.

    ``max_batches`` stops early (throttled runs, tests); the job stays ``running`` and the
    next call resumes it. ``labels`` (``app_label.Model``) limits the run to those models: each model has
    its own job, so runs over disjoint sets of models may go in parallel (``keys reencrypt
    --parallel``). Raises KeysError for an unknown purpose, model or batch size.
    """
    system_scope = keys_settings.SYSTEM_CONTEXT
    if connection.vendor != "postgresql":
        raise KeysError(
            "re-encryption needs PostgreSQL (row locks and array updates); the embedded SQLite mode has none"
        )
    if purpose not in (DataKey.Purpose.FIELD, DataKey.Purpose.INDEX):
        raise KeysError(f"re-encryption is for 'field' or 'index' values, not {purpose!r}")
    if not 1 <= batch <= 10_000:
        raise KeysError("batch must be between 1 and 10000 rows")
    chosen = select_models(purpose, labels)
    with system_scope("re-encryption: find the active keys"):
        targets = _targets()
    # A job is bound to the key of its purpose: a newer rotation of that key supersedes it.
    target_id = int.from_bytes(targets.index_prefix if purpose == "index" else targets.field_header[1:], "big")
    key_event.send(
        __name__, action="key.reencrypt_start", outcome="success", key_id=target_id, purpose=purpose, details={}
    )
    jobs, budget = [], max_batches
    for model, fields in chosen:
        job = _job_for(purpose, model, target_id, system_scope)
        jobs.append(job)
        try:
            budget = _run_job(job, model, fields, targets, batch, progress, budget, system_scope)
        except Exception as exc:
            _fail(job, exc)
            raise
        if budget == 0 or job.status == ReencryptionJob.Status.FAILED:
            break  # out of batches, or superseded: the newer job handles the rest
    if all(job.status == ReencryptionJob.Status.DONE for job in jobs):
        key_event.send(
            __name__,
            action="key.reencrypt_done",
            outcome="success",
            key_id=target_id,
            purpose=purpose,
            details={
                "rows_changed": sum(j.rows_changed for j in jobs),
                "values_unreadable": sum(j.values_unreadable for j in jobs),
            },
        )
    return jobs


def _fail(job: ReencryptionJob, exc: BaseException) -> None:
    """Record a job's failure (its batch rolled back) and audit it. Only ``keys`` errors,
    which never carry values, are quoted; anything else is named by its type."""
    error = f"{type(exc).__name__}: {exc}" if isinstance(exc, KeysError) else f"{type(exc).__name__} (see the log)"
    job.status, job.error, job.finished_at = ReencryptionJob.Status.FAILED, error[:500], timezone.now()
    ReencryptionJob.objects.filter(pk=job.pk, status=ReencryptionJob.Status.RUNNING).update(
        status=job.status, error=job.error, finished_at=job.finished_at, updated_at=job.finished_at
    )
    key_event.send(
        __name__,
        action="key.reencrypt_failed",
        outcome="error",
        key_id=job.target_key_id,
        purpose=job.purpose,
        details={"job": job.pk, "model": job.model, "rows_done": job.rows_done, "error": type(exc).__name__},
    )


def _job_for(
    purpose: str, model: type[models.Model], target_id: int, system_scope: Callable[[str], Any]
) -> ReencryptionJob:
    label = model._meta.label
    running = ReencryptionJob.objects.filter(
        purpose=purpose, model=label, status=ReencryptionJob.Status.RUNNING
    ).first()
    if running is not None and running.target_key_id == target_id:
        return running  # resume where the last run stopped
    if running is not None:  # a rotation happened meanwhile: start over towards the new key
        running.status, running.error = ReencryptionJob.Status.FAILED, "superseded by a newer active key"
        running.finished_at = timezone.now()
        running.save(update_fields=["status", "error", "finished_at"])
    with system_scope("re-encryption: count rows"):
        total = model._base_manager.count()
    return ReencryptionJob.objects.create(purpose=purpose, model=label, target_key_id=target_id, rows_total=total)


# Row-level security collapses the planner's row estimates for the job's statements (its
# policies' claims are InitPlan parameters it cannot see through: "7 rows" of a million). With
# them, PostgreSQL plans the keyset read as a sort of a whole-table scan, and the batch UPDATE
# as a nested loop that rescans the batch for every row, or a sequential scan of the table:
# both cost O(table) per batch. Within each batch transaction (SET LOCAL), the job's
# statements are planned as index lookups instead, whatever the estimates say: the read walks
# the primary-key index in order; the UPDATE finds the batch's rows through the primary key
# (``= ANY(ids)``) and hash-joins them to the batch's values. (Without the hash join, a
# nested loop would compare every row with every value: O(batch^2), seconds per batch.)
# Sorting is off too: a keyset index that ends in the primary key (patients' created_at, id)
# would otherwise be scanned for the ``id > x`` condition and its rows sorted by id.
INDEX_LOOKUPS = {
    "enable_seqscan": "off",
    "enable_bitmapscan": "off",
    "enable_nestloop": "off",
    "enable_sort": "off",
}


def batch_statements(model: type[models.Model], fields: list[EncryptedMixin]) -> tuple[str, str, str]:
    """The job's three statements for ``model``: the keyset read of a batch (locking its rows),
    the batch UPDATE of its encrypted columns, and — for sealed models — the batch UPDATE of
    the encrypted columns, row version and row seal (empty otherwise). An UPDATE takes one
    array per column, the primary keys first, and the primary keys once more at the end."""

    def qn(name: str | None) -> str:
        return str(connection.ops.quote_name(str(name)))

    table, pk = qn(model._meta.db_table), qn(model._meta.pk.column)
    columns = ", ".join(qn(f.column) for f in fields)
    select = f"SELECT {pk}, {columns} FROM {table} WHERE {pk} > %s ORDER BY {pk} LIMIT %s FOR UPDATE"  # noqa: S608

    def update(targets: list[tuple[str, str]]) -> str:
        assignments = ", ".join(f"{column} = v.c{i}" for i, (column, _) in enumerate(targets))
        casts = ", ".join(["%s::uuid[]"] + [f"%s::{cast}[]" for _, cast in targets])
        names = ", ".join(["id"] + [f"c{i}" for i in range(len(targets))])
        return (
            f"UPDATE {table} AS t SET {assignments} FROM unnest({casts}) AS v({names}) "  # noqa: S608 - quoted names
            f"WHERE t.{pk} = v.id AND t.{pk} = ANY(%s::uuid[])"
        )

    values = [(qn(f.column), "bytea") for f in fields]
    sealed = ""
    if has_row_integrity(model):
        spec = model.row_integrity  # type: ignore[attr-defined]
        sealed = update([*values, (qn(spec.version), "bigint"), (qn(spec.seal), "bytea")])
    return select, update(values), sealed


@contextmanager
def planned_as_index_lookups(*, restore: bool = True) -> Iterator[None]:
    """Plan the statements inside as index lookups (INDEX_LOOKUPS) for the current transaction.

    Transaction-local (``set_config(..., true)``). With ``restore``, the previous settings come
    back on the way out too: inside an outer transaction (a caller's ``atomic``, a test) a batch
    is only a savepoint, and the settings must not outlive it (an error rolls them back with
    the savepoint). One statement each way: a batch is a few statements only."""
    names = list(INDEX_LOOKUPS)
    with connection.cursor() as cursor:
        # The target list is evaluated in order: the current values are read before the change.
        cursor.execute(
            "SELECT " + ", ".join(["current_setting(%s)"] * len(names) + ["set_config(%s, %s, true)"] * len(names)),
            [*names, *(value for name in names for value in (name, INDEX_LOOKUPS[name]))],
        )
        before = cursor.fetchone()[: len(names)]
    yield
    if restore and names:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT " + ", ".join(["set_config(%s, %s, true)"] * len(names)),
                [value for name, old in zip(names, before, strict=True) for value in (name, old)],
            )


def _run_job(
    job: ReencryptionJob,
    model: type[models.Model],
    fields: list[EncryptedMixin],
    targets: _Targets,
    batch: int,
    progress: Progress | None,
    budget: int | None,
    system_scope: Callable[[str], Any],
) -> int | None:
    statements = batch_statements(model, fields)
    long_transaction = keys_settings.LONG_TRANSACTION
    nested = connection.in_atomic_block  # then each batch is a savepoint: its settings must not leak
    started = time.monotonic()
    done_at_start = job.rows_done
    while budget is None or budget > 0:
        with system_scope("re-encryption batch"), transaction.atomic(), long_transaction():
            if not _still_current(job):
                break
            with planned_as_index_lookups(restore=nested):
                rows, changed, unreadable = _process_batch(job, model, fields, targets, batch, statements)
            if not rows:
                job.status, job.finished_at = ReencryptionJob.Status.DONE, timezone.now()
                job.save(update_fields=["status", "finished_at", "updated_at"])
                break
            job.last_pk = rows[-1][0]
            job.rows_done += len(rows)
            job.rows_changed += changed
            job.values_unreadable += unreadable.n
            job.save(update_fields=["last_pk", "rows_done", "rows_changed", "values_unreadable", "updated_at"])
        if budget is not None:
            budget -= 1
        if progress is not None:
            elapsed = time.monotonic() - started
            progress(job, (job.rows_done - done_at_start) / elapsed if elapsed > 0 else 0.0)
    return budget


def _process_batch(
    job: ReencryptionJob,
    model: type[models.Model],
    fields: list[EncryptedMixin],
    targets: _Targets,
    batch: int,
    statements: tuple[str, str, str],
) -> tuple[list[tuple[Any, ...]], int, _Count]:
    """Lock and read the next batch after the checkpoint, write its re-encrypted rows back:
    (the rows read, how many changed, the values left under a destroyed key)."""
    select, update, update_sealed = statements
    with connection.cursor() as cursor:
        cursor.execute(select, [job.last_pk or uuid.UUID(int=0), batch])
        rows = cursor.fetchall()
    unreadable = _Count()
    if not rows:
        return rows, 0, unreadable
    if update_sealed:
        changed = _upgrade_sealed(model, rows, targets)
        statement = update_sealed
    else:
        changed = _reencrypt_rows(rows, fields, targets, model._meta.pk.attname, unreadable)
        statement = update
    if changed:
        params: list[Any] = [[row[i] for row in changed] for i in range(len(changed[0]))]
        params.append(params[0])
        with connection.cursor() as cursor:
            cursor.execute(statement, params)
    return rows, len(changed), unreadable


def _still_current(job: ReencryptionJob) -> bool:
    """Lock the job row and the purpose's active key for this batch; refresh the checkpoint.

    False, with the job marked failed if it was still running, when the job was superseded
    (by another worker) or its target is no longer the active key. The active key is held
    with FOR KEY SHARE: a rotation waits for the batch, while encryption-count reservations
    (which update no key column) do not.
    """
    fresh = ReencryptionJob.objects.select_for_update().get(pk=job.pk)
    job.status, job.error, job.finished_at = fresh.status, fresh.error, fresh.finished_at
    job.last_pk, job.rows_done, job.rows_changed = fresh.last_pk, fresh.rows_done, fresh.rows_changed
    job.values_unreadable = fresh.values_unreadable
    if fresh.status != ReencryptionJob.Status.RUNNING:
        return False  # superseded or finished by another worker: never touch it again
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id FROM keys_datakey WHERE purpose = %s AND status = 'active' FOR KEY SHARE", [job.purpose]
        )
        active = cursor.fetchone()
    if active is not None and active[0] == job.target_key_id:
        return True
    now = "none" if active is None else f"key {active[0]}"
    job.status, job.finished_at = ReencryptionJob.Status.FAILED, timezone.now()
    job.error = f"superseded: the active {job.purpose} key is {now}, not the job's target {job.target_key_id}"
    job.save(update_fields=["status", "error", "finished_at", "updated_at"])
    return False


class _Count:
    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0


def _upgrade_sealed(model: type[models.Model], rows: list[tuple[Any, ...]], targets: _Targets) -> list[list[Any]]:
    """Sealed models (keys.integrity) re-seal their rows — values, version and row seal
    together, legacy rows upgraded — for this batch's locked rows: ``[pk, *values, version,
    seal]`` per row that needs it, in the order of the sealed UPDATE's columns."""
    spec = model.row_integrity  # type: ignore[attr-defined]
    names = [f.attname for f in encrypted_fields(model)] + [spec.version, spec.seal]
    return [
        [pk, *(values[name] for name in names)]
        for pk, values in resealed_rows(model, [row[0] for row in rows], targets.field_header)
    ]


def _reencrypt_rows(
    rows: list[tuple[Any, ...]],
    fields: list[EncryptedMixin],
    targets: _Targets,
    pk_attname: str,
    unreadable: _Count | None = None,
) -> list[list[Any]]:
    changed = []
    for row in rows:
        pk, values = row[0], [None if v is None else bytes(v) for v in row[1:]]
        data: dict[str, Any] = {pk_attname: pk}
        dirty = False
        for i, (field, token) in enumerate(zip(fields, values, strict=True)):
            if token is None or not _stale(field, token, targets):
                continue
            if _under_destroyed_key(field, token, targets):
                if unreadable is not None:
                    unreadable.n += 1  # crypto-shredded on purpose: nothing can move it
                continue
            plaintext = field.open_value(data, token, pk)
            values[i] = field.seal_value(plaintext, pk, data)
            dirty = True
        if dirty:
            changed.append([pk, *values])
    return changed
