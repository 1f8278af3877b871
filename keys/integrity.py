"""Row integrity for clinical rows: what the encrypted bytes alone cannot prove.

Envelope v1 binds a value to its model, field and row id, so a value cannot be moved to
another row. Someone who can write the database could still put back an *older* ciphertext
of the same row and field, or change the row's plain columns (the patient it belongs to,
its author, its dates, its status). A model that derives from :class:`SealedRow` and names a
:class:`RowIntegrity` gets, on top of envelope v1:

* **Context v2.** Each encrypted value's associated data is
  ``app.model.field ‖ 0x00 ‖ row UUID ‖ 0x02 ‖ owner (patient) UUID ‖ 8-byte row version``:
  a value opens only in the row, for the owner and at the version it was written for. Every
  save increments ``row_version`` (under a row lock, refusing a concurrent change) and
  re-seals every encrypted value of the row.
* **Row seal.** ``row_seal`` = ``0x01 ‖ key id ‖ HMAC-SHA256`` under the active ``audit`` MAC
  data key, with a key derived for the label ``neonpro.row-seal.v1 ‖ app.model``, over the
  row's UUID, its version and every column the model names (owner, author, dates, status).
  It is checked when the row is loaded, so a changed column or version is refused before any
  code sees the row — with :class:`~keys.exceptions.RowIntegrityError`, which names the
  model and row only, and is reported to ``keys.signals.integrity_failure`` (the audit log).
* **Legacy rows.** A row written before this existed has version 0 and no seal; its values
  still open with the v1 context while ``NEONPRO_LEGACY_ROWS_READABLE`` is on, and the
  re-encryption job (``keys reencrypt``) upgrades it. With the setting off, a version-0 row
  is refused like a tampered one.

What stays outside (docs/encryption.md): a whole older copy of a row put back with all its
columns, version and seal together (the model's history can show it), deleted rows, and
columns the model does not name.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from typing import Any, ClassVar, cast

from django.db import connections, models, router, transaction

from keys import crypto
from keys.conf import keys_settings
from keys.envelope import header_for
from keys.exceptions import DecryptionError, RowIntegrityError, StaleRowError
from keys.fields import INDEX_PREFIX_SIZE, EncryptedMixin, encrypted_fields
from keys.keyring import keyring
from keys.sealing import ROW_BINDING, ROW_CONTEXT, SEALED_PK, binding_of
from keys.signals import integrity_failure

SEAL_VERSION = 1
SEAL_SIZE = 1 + 4 + 32
MAC_PURPOSE = "audit"
SEAL_LABEL = b"neonpro.row-seal.v1\x00"
TAMPERED = "the row's seal does not match: its linked columns or version were altered, or it was copied"
LEGACY_REFUSED = "the row has no seal (version 0) and legacy rows are no longer accepted"
CONFLICT = "the row changed since it was loaded; load it again and repeat the change"
ENVELOPE_HEADER = header_for(1)  # only its length is used
_UPGRADING: ContextVar[bool] = ContextVar("keys_integrity_upgrading", default=False)


class RowIntegrity:
    """Which columns of a model its row seal and its values' associated data cover.

    ``owner``: the field naming the patient the row belongs to (bound into every encrypted
    value); ``sealed``: the fields the row seal covers (the owner is always among them).
    """

    version = "row_version"
    seal = "row_seal"

    def __init__(self, *, owner: str, sealed: Iterable[str]) -> None:
        self.owner = owner
        self.sealed = tuple(dict.fromkeys([owner, *sealed]))

    def reporter(self, model: type[models.Model]) -> Callable[[Any, DecryptionError], None]:
        """The hook a field of ``model`` calls when one of its values fails to open."""
        label = model._meta.label_lower

        def report(pk: Any, error: DecryptionError) -> None:
            _report(label, pk, "value", type(error).__name__, error.key_id)

        return report


def _report(label: str, pk: Any, check: str, code: str, key_id: int | None) -> None:
    # send_robust: a failing receiver must not hide the integrity error itself (it is logged).
    integrity_failure.send_robust(__name__, model=label, pk=pk, check=check, code=code, key_id=key_id)


def _canonical(field: models.Field[Any, Any], value: Any) -> bytes:
    if value is not None:
        value = field.get_prep_value(value)
    if value is None:
        return b"\x00"
    if isinstance(value, uuid.UUID):
        raw = value.bytes
    elif isinstance(value, dt.datetime):
        raw = (value.astimezone(dt.UTC) if value.tzinfo else value).isoformat().encode()
    elif isinstance(value, dt.date):
        raw = value.isoformat().encode()
    else:
        raw = str(value).encode()
    return b"\x01" + len(raw).to_bytes(4, "big") + raw


def seal_message(model: type[models.Model], data: dict[str, Any]) -> bytes:
    """What a row's seal authenticates: its UUID, version and sealed columns, unambiguously."""
    spec: RowIntegrity = model.row_integrity  # type: ignore[attr-defined]
    opts = model._meta
    assert opts.pk is not None
    pk = data[opts.pk.attname]
    parts = [uuid.UUID(str(pk)).bytes, int(data[spec.version]).to_bytes(8, "big")]
    for name in spec.sealed:
        field = _field(model, name)
        parts.append(_canonical(field, data.get(field.attname)))
    return b"".join(parts)


def _field(model: type[models.Model], name: str) -> models.Field[Any, Any]:
    return cast("models.Field[Any, Any]", model._meta.get_field(name))


def _label(model: type[models.Model]) -> bytes:
    return SEAL_LABEL + model._meta.label_lower.encode()


def compute_seal(model: type[models.Model], data: dict[str, Any]) -> bytes:
    key_id, tag = crypto.sign(seal_message(model, data), purpose=MAC_PURPOSE, label=_label(model))
    return bytes([SEAL_VERSION]) + key_id.to_bytes(4, "big") + tag


def seal_key_id(seal: bytes | None) -> int | None:
    """The MAC key a seal was made with (None for no seal or a malformed one)."""
    if seal is None or len(seal) != SEAL_SIZE or seal[0] != SEAL_VERSION:
        return None
    return int.from_bytes(seal[1:5], "big")


def check_row(model: type[models.Model], data: dict[str, Any]) -> None:
    """Verify a loaded row's seal and record the binding its values were sealed for.

    Rows loaded without every sealed column (``only()``/``defer()``) are not checked here;
    their values still carry owner and version in their associated data. Raises
    RowIntegrityError (and reports it) when the seal does not match.
    """
    spec: RowIntegrity = model.row_integrity  # type: ignore[attr-defined]
    opts = model._meta
    assert opts.pk is not None
    needed = [spec.version, spec.seal, *(_field(model, name).attname for name in spec.sealed)]
    if any(name not in data for name in needed):
        return
    pk = data.get(opts.pk.attname)
    version, seal = data[spec.version], data[spec.seal]
    seal = None if seal is None else bytes(seal)
    if not version and seal is None:
        if not (_UPGRADING.get() or keys_settings.LEGACY_ROWS_READABLE):
            _fail(model, pk, LEGACY_REFUSED, "legacy_row_refused", None)
        data[ROW_BINDING] = b""
        return
    key_id = seal_key_id(seal)
    if (
        not version
        or seal is None
        or key_id is None
        or not crypto.verify_signature(
            seal_message(model, data), seal[5:], purpose=MAC_PURPOSE, label=_label(model), key_id=key_id
        )
    ):
        _fail(model, pk, TAMPERED, "seal_mismatch", key_id)
    data[spec.seal] = seal
    data[ROW_BINDING] = binding_of(data, _field(model, spec.owner).attname, spec.version, "")


def _fail(model: type[models.Model], pk: Any, reason: str, code: str, key_id: int | None) -> None:
    error = RowIntegrityError(reason, key_id=key_id, where=f"{model._meta.label_lower} row {pk}")
    _report(model._meta.label_lower, pk, "seal", code, key_id)
    raise error


def _open_all(instance: models.Model, fields: list[EncryptedMixin]) -> None:
    """Every encrypted value of the row in plaintext, opened under the context it was sealed for."""
    data = instance.__dict__
    deferred = [f.attname for f in fields if f.attname not in data]
    if deferred and not instance._state.adding:
        instance.refresh_from_db(fields=deferred)
    pk = instance.pk
    for field in fields:
        value = data.get(field.attname)
        if value.__class__ is not bytes:
            continue
        sealed_pk = data.get(SEALED_PK)
        if instance._state.adding and (sealed_pk is None or sealed_pk == pk):
            continue  # bytes assigned to a new row: the field's pre_save refuses them
        data[field.attname] = field._read(data, value, sealed_pk or pk)


def bind_version(model: type[models.Model], data: dict[str, Any], version: int) -> None:
    """Give the row ``version``: its values will be sealed for it, and its seal computed."""
    spec: RowIntegrity = model.row_integrity  # type: ignore[attr-defined]
    data[spec.version] = version
    data.pop(ROW_CONTEXT, None)
    owner = _field(model, spec.owner).attname
    data[ROW_BINDING] = binding_of(data, owner, spec.version, model._meta.label_lower)
    data[spec.seal] = compute_seal(model, data)


class SealedRow(models.Model):
    """Abstract base of clinical models: versioned, sealed rows (see the module docstring).

    Subclasses set ``row_integrity = RowIntegrity(owner=..., sealed=(...))``.
    """

    row_integrity: ClassVar[RowIntegrity]

    row_version = models.PositiveBigIntegerField(
        default=0, editable=False, help_text="Incremented by every save; bound into each encrypted value."
    )
    row_seal = models.BinaryField(
        null=True, editable=False, help_text="HMAC over the row's id, version and linked columns."
    )

    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Save at the next row version, every encrypted value re-sealed for it.

        Raises StaleRowError when the row changed in the database since it was loaded (its
        version moved): a stale copy would otherwise overwrite the newer values.
        """
        model = type(self)
        data = self.__dict__
        spec = self.row_integrity
        using = kwargs.get("using") or router.db_for_write(model, instance=self)
        fields = encrypted_fields(model)
        update_fields = kwargs.get("update_fields")
        if update_fields is not None:
            kwargs["update_fields"] = list(
                dict.fromkeys([*update_fields, spec.version, spec.seal, *spec.sealed, *(f.name for f in fields)])
            )
        saved = {k: data.get(k) for k in (spec.version, spec.seal, ROW_BINDING, ROW_CONTEXT)}
        with transaction.atomic(using=using):
            _open_all(self, fields)
            current = self._locked_version(using)
            if current is not None and current != (data.get(spec.version) or 0):
                raise StaleRowError(f"{model._meta.label_lower} row {self.pk}: {CONFLICT}")
            bind_version(model, data, (current or 0) + 1)
            try:
                super().save(*args, **kwargs)
            except BaseException:
                for key, value in saved.items():
                    if value is None and key in (ROW_BINDING, ROW_CONTEXT):
                        data.pop(key, None)
                    else:
                        data[key] = value
                raise

    @classmethod
    def from_db(cls, db: str | None, field_names: Any, values: Any, **kwargs: Any) -> Any:
        instance = super().from_db(db, field_names, values, **kwargs)
        check_row(cls, instance.__dict__)
        return instance

    def refresh_from_db(self, using: str | None = None, fields: Any = None, from_queryset: Any = None) -> None:
        if fields is not None:
            # The refreshed values open only with the row's owner and version: load them too.
            spec = self.row_integrity
            fields = list(dict.fromkeys([*fields, spec.version, spec.seal, *spec.sealed]))
        super().refresh_from_db(using=using, fields=fields, from_queryset=from_queryset)

    def _locked_version(self, using: str) -> int | None:
        """The row's version in the database, locked until the transaction ends (None: no row)."""
        if self._state.adding or self.pk is None:
            return None
        table = connections[using].ops.quote_name(self._meta.db_table)
        pk = connections[using].ops.quote_name(str(self._meta.pk.column))
        lock = " FOR UPDATE" if connections[using].features.has_select_for_update else ""
        with connections[using].cursor() as cursor:
            cursor.execute(f"SELECT row_version FROM {table} WHERE {pk} = %s{lock}", [self.pk])  # noqa: S608
            row = cursor.fetchone()
        return None if row is None else int(row[0])


def prepare_bulk(model: type[models.Model], objs: list[models.Model]) -> None:
    """``bulk_create``: every new row at version 1, sealed (before its values are)."""
    for obj in objs:
        bind_version(model, obj.__dict__, 1)


def has_row_integrity(model: type[models.Model]) -> bool:
    return isinstance(getattr(model, "row_integrity", None), RowIntegrity) and not model._meta.abstract


def resealed_rows(model: type[models.Model], pks: list[Any], field_header: bytes) -> list[tuple[Any, dict[str, Any]]]:
    """Re-encryption for sealed models: the rows among ``pks`` that need re-sealing, as
    ``(pk, {attname: value})`` — every encrypted value, the next version and the seal — for the
    caller, which holds the rows locked, to write back in one statement.

    A row needs it when it is a legacy row (version 0), when a value is not under the
    active field key (``field_header``), or when its seal is not under the active MAC key.
    Such a row is opened as it is (legacy rows even when no longer readable otherwise) and
    given the next version: same plaintext; the caller's write keeps ``updated_at``.
    """
    spec: RowIntegrity = model.row_integrity  # type: ignore[attr-defined]
    fields = encrypted_fields(model)
    mac_key = keyring.mac_keys(MAC_PURPOSE)[0].key_id
    rows = []
    for obj in _load_for_upgrade(model, pks):
        data = obj.__dict__
        stale = not data[spec.version] or seal_key_id(data[spec.seal]) != mac_key
        stale = stale or any(
            data[f.attname] is not None and _header_of(f, data[f.attname]) != field_header for f in fields
        )
        if not stale:
            continue
        _open_all(obj, fields)
        bind_version(model, data, int(data[spec.version]) + 1)
        values = {f.attname: f.pre_save(obj, False) for f in fields}
        values.update({spec.version: data[spec.version], spec.seal: data[spec.seal]})
        rows.append((obj.pk, values))
    return rows


def _header_of(field: EncryptedMixin, token: Any) -> bytes:
    start = INDEX_PREFIX_SIZE if field.search else 0
    return bytes(token)[start : start + len(ENVELOPE_HEADER)]


def _load_for_upgrade(model: type[models.Model], pks: list[Any]) -> list[models.Model]:
    """The rows, every seal checked — legacy rows accepted, whatever the setting says."""
    token = _UPGRADING.set(True)
    try:
        return list(model._base_manager.filter(pk__in=pks).order_by("pk"))
    finally:
        _UPGRADING.reset(token)
