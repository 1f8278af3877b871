"""Encrypted model fields.

Guarantees:

* A value is encrypted (envelope v1, AES-256-GCM) in ``pre_save`` — which ``save()`` and
  ``bulk_create()`` both call — and decrypted lazily on first attribute access, so a request
  pays only for the fields it reads. Nothing is encrypted or decrypted at import time.
* The associated data binds each value to ``app_label.model.field`` and the row's UUID
  primary key: a value copied to another row or column fails to decrypt. On models with row
  integrity (``keys.integrity``) it also binds the row's owner and version (context v2).
* ``None`` is stored as SQL NULL. Only ``isnull`` lookups work on ordinary encrypted
  fields; searchable fields (``search=...``) also support ``exact`` and ``in`` through a
  keyed, normalised blind index stored as the first 20 bytes of the same column. The
  model declares ``<name>_probe = search_probe(name)`` for each (system check ``keys.E105``):
  a generated column of 4 bytes of the token's MAC with a B-tree on it, which the lookups
  probe while comparing the whole 20-byte token too, so a probe collision never returns
  another value's row. Only leak-proof operators (bytea ``=``, ``>=``, ``<``) on plain
  columns appear in the lookup, so PostgreSQL may use the index under row-level security.
* Operations that cannot encrypt correctly raise ``FieldError`` saying what to do:
  ``QuerySet.update()``/``bulk_update()`` with a plaintext value, ``values()`` and
  ``values_list()`` that select an encrypted column, and any other lookup.

Stored layout of a searchable value: index key id (4 bytes) ‖ HMAC-SHA256 truncated to 16
bytes ‖ envelope. The index bytes are part of the envelope's associated data; the probe
column holds bytes 5..8 (the first 4 of the MAC).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any, NoReturn, cast

from django.core import checks, exceptions
from django.core.exceptions import FieldError
from django.db import models
from django.db.models.expressions import Col, F, Func
from django.db.models.lookups import IsNull, Lookup
from django.db.models.signals import class_prepared
from django.dispatch import receiver
from django.utils import timezone

from keys import crypto, envelope
from keys.exceptions import EncryptionError
from keys.keyring import keyring
from keys.normalizers import NORMALIZERS
from keys.sealing import (
    INDEX_TOKEN_SIZE,
    ROW_CONTEXT,
    SEALED_PK,
    OnFailure,
    Reader,
    RowContext,
    Sealer,
    make_column_sealer,
    make_reader,
    make_row_context,
    make_sealer,
    row_context,
)

__all__ = ["ROW_CONTEXT", "SEALED_PK", "SearchProbe", "search_probe"]
INDEX_PREFIX_SIZE = INDEX_TOKEN_SIZE
# The part of a token its probe column holds: bytes 5..8 (1-based), the first 32 bits of the
# MAC after the 4-byte key id (which every row under one index key shares). Any size up to 7
# bytes gives a B-tree its smallest (16-byte) entry; 4 keep the column at 5 bytes a row and
# leave about one false candidate per 4 billion rows, which the token comparison discards.
PROBE_START = 5
PROBE_SIZE = 4
_OVERHEAD = envelope.OVERHEAD
_VERSION = envelope.VERSION


class EncryptedAttribute:
    """Data descriptor: holds ciphertext as loaded, plaintext once read or assigned."""

    __slots__ = ("attname", "field")

    def __init__(self, field: EncryptedMixin) -> None:
        self.field = field
        self.attname = field.attname

    def __get__(self, instance: models.Model | None, owner: type | None = None) -> Any:
        if instance is None:
            return self
        data = instance.__dict__
        try:
            value = data[self.attname]
        except KeyError:
            instance.refresh_from_db(fields=[self.attname])
            value = data[self.attname]
        if value.__class__ is bytes:
            value = data[self.attname] = self.field._read(data, value)
        return value

    def __set__(self, instance: models.Model, value: Any) -> None:
        data = instance.__dict__
        data[self.attname] = value
        if value.__class__ is bytes:
            data[SEALED_PK] = data.get(self.field.pk_attname)


# For the type checker the mixin is a Field, so its super() calls and the attributes Django
# sets on fields (attname, column, name, ...) resolve; at runtime it derives from object only.
if TYPE_CHECKING:
    _MixinBase = models.Field[Any, Any]
else:
    _MixinBase = object


class EncryptedMixin(_MixinBase):
    """Turns a Django field class into its encrypted twin (stored as ``bytea``/``BLOB``).

    Subclasses define ``encode(value) -> bytes`` and ``decode(bytes) -> value``.
    """

    descriptor_class = EncryptedAttribute
    encrypted = True

    def __init__(self, *args: Any, search: str | None = None, context: str | None = None, **kwargs: Any) -> None:
        if search is not None and search not in NORMALIZERS:
            raise ValueError(f"search={search!r} is not a known normaliser: {', '.join(NORMALIZERS)}")
        self.search = search
        self.aad_context = context
        self._prefix = b""
        self.label = ""
        self.pk_attname = "id"
        self.probe: models.Field[Any, Any] | None = None  # the search_probe() column, bound at class_prepared
        # Row context and failure hook; keys.integrity binds them for models with row integrity.
        self._context_of: RowContext = row_context
        self._on_failure: OnFailure | None = None
        # str fields decode with the C method itself; the others through their decode().
        self._decode: Any = bytes.decode if self.python_type_name == "str" else self.decode
        super().__init__(*args, **kwargs)

    # -- model wiring ------------------------------------------------------------------
    def contribute_to_class(
        self, cls: type[models.Model], name: str, private_only: bool = False, **kwargs: Any
    ) -> None:
        # **kwargs mirrors DateField.contribute_to_class; Field's own signature still rejects extras.
        super().contribute_to_class(cls, name, private_only=private_only, **kwargs)
        opts = cls._meta
        self.label = self.aad_context or f"{opts.app_label}.{opts.model_name}.{name}"
        self._prefix = self.label.encode() + b"\x00"
        if self.search:
            self._normalize = NORMALIZERS[self.search]
        self._seal: Sealer = make_sealer(self._prefix, self._normalize if self.search else None)
        self._bind_reader()

    def _bind_reader(self) -> None:
        """(Re)build the reader and the column sealer: they bind the primary key's attname,
        known once the class is."""
        self._read: Reader = make_reader(
            self._prefix,
            searchable=bool(self.search),
            decode=self._decode,
            pk_attname=self.pk_attname,
            where=self.where,
            context_of=self._context_of,
            on_failure=self._on_failure,
        )
        self._stash = f"_keys_sealed:{self.attname}"
        self.seal_column = make_column_sealer(
            self._prefix,
            self._normalize if self.search else None,
            attname=self.attname,
            pk_attname=self.pk_attname,
            encode=self.encode,
            stash=self._stash,
            context_of=self._context_of,
        )

    def deconstruct(self) -> tuple[str, str, Sequence[Any], dict[str, Any]]:
        name, path, args, kwargs = super().deconstruct()
        if self.search:
            kwargs["search"] = self.search
        if self.aad_context:
            kwargs["context"] = self.aad_context
        return name, path, args, kwargs

    def get_internal_type(self) -> str:
        return "BinaryField"

    def db_type(self, connection: Any) -> str:
        return str(connection.data_types["BinaryField"])

    def get_db_converters(self, connection: Any) -> list[Any]:
        return []

    def check(self, **kwargs: Any) -> list[checks.CheckMessage]:
        errors = list(super().check(**kwargs))
        for option in ("unique", "primary_key"):
            if getattr(self, option, False):
                errors.append(
                    checks.Error(
                        f"Encrypted fields cannot be {option}: ciphertexts of equal values differ.",
                        hint="Use search=... for equality lookups and enforce uniqueness in a service.",
                        obj=self,
                        id="keys.E101",
                    )
                )
        if getattr(self, "auto_now", False) or getattr(self, "auto_now_add", False):
            errors.append(checks.Error("Encrypted date fields do not support auto_now.", obj=self, id="keys.E102"))
        model = getattr(self, "model", None)
        if model is not None and not isinstance(model._meta.pk, models.UUIDField):
            errors.append(
                checks.Error(
                    "Models with encrypted fields need a UUID primary key (it is bound into each ciphertext).",
                    hint="Declare id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False).",
                    obj=self,
                    id="keys.E103",
                )
            )
        if self.search and not isinstance(self, models.CharField | models.TextField):
            errors.append(checks.Error("search=... is only for text fields.", obj=self, id="keys.E104"))
        errors.extend(self._check_indexes(model))
        return errors

    def _check_indexes(self, model: type[models.Model] | None) -> list[checks.CheckMessage]:
        if getattr(self, "db_index", False):
            return [
                checks.Error(
                    "An index over ciphertext serves no lookup and costs as much as the column.",
                    hint="Remove db_index=True; a searchable field is indexed through its search_probe() column.",
                    obj=self,
                    id="keys.E106",
                )
            ]
        if not self.search or model is None or not model._meta.managed or self.probe is not None:
            return []
        return [
            checks.Error(
                f"Searchable field {self.name!r} has no search probe: every lookup would read the whole table.",
                hint=f"Declare {self.name}_probe = keys.fields.search_probe({self.name!r}) on {model.__name__} "
                "and run makemigrations.",
                obj=self,
                id="keys.E105",
            )
        ]

    # -- encryption --------------------------------------------------------------------
    def encode(self, value: Any) -> bytes:
        raise NotImplementedError

    def decode(self, plaintext: bytes) -> Any:
        raise NotImplementedError

    def where(self, pk: Any) -> str:
        return f"{self.label} of row {pk}"

    def _row_context(self, data: dict[str, Any], pk: Any) -> tuple[Any, bytes]:
        return self._context_of(data, pk, self.label)

    def open_value(self, data: dict[str, Any], token: bytes, pk: Any = None) -> Any:
        """Decrypt a stored value; ``data`` is the instance ``__dict__``.

        ``pk`` is the row the value was sealed for (default: the one it was loaded with).
        Raises a DecryptionError subclass naming the field and row on any failure.
        """
        return self._read(data, token, pk)

    def seal_value(self, value: Any, pk: Any, data: dict[str, Any] | None = None) -> bytes:
        """Encrypt a plaintext value for the row whose primary key is ``pk``."""
        plaintext = self.encode(value)
        if data is None:
            data = {}
        row = data.get(ROW_CONTEXT)
        if row is None or row[0] is not pk:
            row = self._context_of(data, pk, self.label)
        return self._seal(plaintext, value, row[1])

    def normalize(self, value: Any) -> str:
        return self._normalize(value if value.__class__ is str else str(value))

    def index_token(self, value: Any) -> bytes:
        prefix, mac = keyring.index_macs(self._prefix)[0]
        return crypto.index_token(prefix, mac, self._normalize(value if value.__class__ is str else str(value)))

    def index_candidates(self, value: Any) -> list[bytes]:
        return crypto.blind_index_candidates(self.normalize(value), context=self._prefix)

    def pre_save(self, model_instance: models.Model, add: bool) -> bytes | None:
        data = model_instance.__dict__
        sealed = data.pop(self._stash, None)  # a token bulk_create sealed a moment ago (keys.bulk)
        try:
            value = data[self.attname]
        except KeyError:
            value = getattr(model_instance, self.attname)
        if value is None:
            return None
        pk = data.get(self.pk_attname)
        if pk is None:
            raise EncryptionError(f"{self.label}: the row needs its UUID primary key before it is encrypted")
        if sealed is not None and sealed[0] is value and sealed[1] == pk:
            return sealed[2]  # type: ignore[no-any-return]
        if value.__class__ is bytes:
            sealed_pk = data.get(SEALED_PK)
            if model_instance._state.adding and (sealed_pk is None or sealed_pk == pk):
                raise TypeError(f"{self.label} takes a {self.python_type_name}, not bytes")
            if sealed_pk == pk:
                return value  # untouched since it was loaded for this very row
            value = self._read(data, value, sealed_pk)
            data[self.attname] = value
        row = data.get(ROW_CONTEXT)
        if row is None or row[0] is not pk:
            row = self._context_of(data, pk, self.label)
        return self._seal(self.encode(value), value, row[1])

    python_type_name = "value"

    # -- what the ORM may and may not do with ciphertext --------------------------------
    def get_db_prep_save(self, value: Any, connection: Any) -> Any:
        if value is None or value.__class__ is bytes:
            return value
        raise FieldError(
            f"{self.label} is encrypted, and each value is bound to its row: QuerySet.update() and "
            "bulk_update() cannot encrypt it. Assign the attribute and call save() on each instance "
            "(or save(update_fields=[...]))."
        )

    def get_db_prep_value(self, value: Any, connection: Any, prepared: bool = False) -> Any:
        return self.get_db_prep_save(value, connection)

    def db_check(self, connection: Any) -> str | None:
        # Defence in depth: the database itself refuses anything that is not envelope-shaped,
        # e.g. plaintext written with update(field=Value(...)) or raw SQL.
        column = connection.ops.quote_name(self.column)
        minimum = _OVERHEAD + (INDEX_PREFIX_SIZE if self.search else 0)
        offset = INDEX_PREFIX_SIZE if self.search else 0
        if connection.vendor == "postgresql":
            return f"octet_length({column}) >= {minimum} AND get_byte({column}, {offset}) = {_VERSION}"
        if connection.vendor == "sqlite":
            return f"length({column}) >= {minimum} AND substr({column}, {offset + 1}, 1) = x'0{_VERSION}'"
        return None

    def select_format(self, compiler: Any, sql: str, params: Any) -> tuple[str, Any]:
        if compiler.query.values_select:
            raise FieldError(
                f"{self.label} is encrypted: values()/values_list() would return ciphertext, because "
                "decryption needs the row's primary key. Load instances instead, e.g. "
                f".only('pk', '{self.name}') (sealed rows: with their version and owner too), and read the attribute."
            )
        return sql, params

    def get_lookup(self, lookup_name: str) -> type[Lookup] | None:
        if lookup_name == "isnull":
            return IsNull
        if self.search and lookup_name in _BLIND_LOOKUPS:
            return _BLIND_LOOKUPS[lookup_name]
        what = "exact, in and isnull" if self.search else "isnull"
        raise FieldError(
            f"Unsupported lookup '{lookup_name}' on {self.label}: the field is encrypted, so only {what} "
            "lookups work on it."
        )

    def get_transform(self, lookup_name: str) -> NoReturn:
        raise FieldError(f"{self.label} is encrypted: transforms such as '{lookup_name}' cannot run on ciphertext.")


# -- lookups for searchable fields ------------------------------------------------------


class _BlindLookup(Lookup):
    prepare_rhs = False
    can_use_none_as_rhs = False

    def get_prep_lookup(self) -> Any:
        if hasattr(self.rhs, "resolve_expression"):
            raise FieldError(
                f"{self.lhs.output_field.label} is encrypted: it can only be compared with literal values, "
                "not expressions or subqueries."
            )
        return self.rhs

    def values(self) -> list[Any]:
        raise NotImplementedError

    # django-stubs types SQL params as tuple[str | int, ...]; Django accepts any sequence
    # (its own lookups return lists) and the params here are bytes.
    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:  # type: ignore[override]
        """``probe IN (...) AND (token range OR ...)``. The probe column is what the search
        index holds; the range (``column >= token AND column < token + 1``) compares the whole
        token, so a probe collision returns no other row. Without a probe column (a model
        that declares none), the ranges alone: a scan, or a whole-column index if one exists."""
        if not isinstance(self.lhs, Col):
            raise FieldError("blind-index lookups only work directly on the encrypted column")
        field = cast(EncryptedMixin, self.lhs.output_field)
        lhs_sql, lhs_params = compiler.compile(self.lhs)
        tokens = [token for value in self.values() for token in field.index_candidates(value)]
        if not tokens:
            from django.core.exceptions import EmptyResultSet

            raise EmptyResultSet
        clauses: list[str] = []
        params: list[Any] = []
        if field.probe is not None:
            probe_sql, probe_params = compiler.compile(Col(self.lhs.alias, field.probe))
            probes = list(dict.fromkeys(probe_of(token) for token in tokens))
            clauses.append(f"{probe_sql} IN ({', '.join(['%s'] * len(probes))})")
            params.extend([*probe_params, *probes])
        ranges: list[str] = []
        for token in tokens:
            upper = _successor(token)
            if upper is None:
                ranges.append(f"{lhs_sql} >= %s")
                params.extend([*lhs_params, token])
            else:
                ranges.append(f"({lhs_sql} >= %s AND {lhs_sql} < %s)")
                params.extend([*lhs_params, token, *lhs_params, upper])
        clauses.append(ranges[0] if len(ranges) == 1 else "(" + " OR ".join(ranges) + ")")
        return "(" + " AND ".join(clauses) + ")", params


class BlindExact(_BlindLookup):
    lookup_name = "exact"

    def values(self) -> list[Any]:
        return [self.rhs]


class BlindIn(_BlindLookup):
    lookup_name = "in"

    def values(self) -> list[Any]:
        try:
            values = list(dict.fromkeys(v for v in self.rhs if v is not None))
        except TypeError:
            raise FieldError("__in on an encrypted field takes an iterable of values") from None
        return values


_BLIND_LOOKUPS: dict[str, type[Lookup]] = {"exact": BlindExact, "in": BlindIn}


def probe_of(token: bytes) -> bytes:
    """The bytes of a 20-byte blind-index token that its search index holds."""
    return token[PROBE_START - 1 : PROBE_START - 1 + PROBE_SIZE]


class SearchProbe(Func):
    """``substr(column, 5, 4)``: the part of a searchable column its probe column holds."""

    template = f"substr(%(expressions)s, {PROBE_START}, {PROBE_SIZE})"
    arity = 1
    output_field = models.BinaryField()


def search_probe(field_name: str) -> models.GeneratedField:
    """The indexed probe column a searchable field needs (checked: ``keys.E105``); declare it
    as ``<field_name>_probe = search_probe("<field_name>")``.

    A stored generated column, so the database keeps it right whoever writes the row (the
    ORM, ``bulk_create``, re-encryption's raw UPDATEs), and no code can forget it.
    """
    return models.GeneratedField(
        expression=SearchProbe(F(field_name)), output_field=models.BinaryField(), db_persist=True, db_index=True
    )


def _probe_source(field: models.Field[Any, Any]) -> str | None:
    """The searchable field ``field`` is the probe of, if it is one."""
    expression = getattr(field, "expression", None)
    if not isinstance(field, models.GeneratedField) or not isinstance(expression, SearchProbe):
        return None
    source = expression.get_source_expressions()[0]
    return cast(str, source.name) if isinstance(source, F) else None  # type: ignore[attr-defined]


def _successor(token: bytes) -> bytes | None:
    """The smallest byte string greater than every string that starts with ``token``."""
    n = int.from_bytes(token, "big") + 1
    if n >> (8 * len(token)):
        return None
    return n.to_bytes(len(token), "big")


# -- concrete field types ---------------------------------------------------------------


# Django's field classes are generic only in django-stubs (subscripting them at runtime
# raises TypeError), so the concrete fields subclass these aliases.
if TYPE_CHECKING:
    _TextField = models.TextField[Any, Any]
    _CharField = models.CharField[Any, Any]
    _DateField = models.DateField[Any, Any]
    _DateTimeField = models.DateTimeField[Any, Any]
    _IntegerField = models.IntegerField[Any, Any]
    _DecimalField = models.DecimalField[Any, Any]
    _BooleanField = models.BooleanField[Any, Any]
    _JSONField = models.JSONField[Any, Any]
else:
    _TextField = models.TextField
    _CharField = models.CharField
    _DateField = models.DateField
    _DateTimeField = models.DateTimeField
    _IntegerField = models.IntegerField
    _DecimalField = models.DecimalField
    _BooleanField = models.BooleanField
    _JSONField = models.JSONField


def _validation(field: EncryptedMixin, message: str) -> exceptions.ValidationError:
    return exceptions.ValidationError(f"{field.label}: {message}", code="invalid")


class EncryptedTextField(EncryptedMixin, _TextField):
    python_type_name = "str"

    def encode(self, value: Any) -> bytes:
        if value.__class__ is not str:
            value = self.to_python(value)
        try:
            return value.encode()  # type: ignore[no-any-return]
        except UnicodeEncodeError:
            raise _validation(self, "contains characters that cannot be encoded as UTF-8") from None

    def decode(self, plaintext: bytes) -> str:
        return plaintext.decode()


class EncryptedCharField(EncryptedMixin, _CharField):
    python_type_name = "str"

    def encode(self, value: Any) -> bytes:
        if value.__class__ is not str:
            value = self.to_python(value)
        if self.max_length is not None and len(value) > self.max_length:
            raise _validation(self, f"value has {len(value)} characters; at most {self.max_length} are allowed")
        try:
            return value.encode()  # type: ignore[no-any-return]
        except UnicodeEncodeError:
            raise _validation(self, "contains characters that cannot be encoded as UTF-8") from None

    def decode(self, plaintext: bytes) -> str:
        return plaintext.decode()


class EncryptedDateField(EncryptedMixin, _DateField):
    python_type_name = "date"

    def encode(self, value: Any) -> bytes:
        if value.__class__ is not dt.date:
            value = self.to_python(value)
        return value.isoformat().encode()  # type: ignore[no-any-return]

    def decode(self, plaintext: bytes) -> dt.date:
        return dt.date.fromisoformat(plaintext.decode())


class EncryptedDateTimeField(EncryptedMixin, _DateTimeField):
    python_type_name = "datetime"

    def encode(self, value: Any) -> bytes:
        value = self.get_prep_value(value)
        if timezone.is_aware(value):
            value = value.astimezone(dt.UTC)
        return value.isoformat().encode()  # type: ignore[no-any-return]

    def decode(self, plaintext: bytes) -> dt.datetime:
        return dt.datetime.fromisoformat(plaintext.decode())


class EncryptedIntegerField(EncryptedMixin, _IntegerField):
    python_type_name = "int"

    if TYPE_CHECKING:
        _validators: list[Any]  # set by Field.__init__; missing from django-stubs

    @property
    def validators(self) -> list[Any]:
        # The column is bytea, so the database imposes no integer range.
        return [*self.default_validators, *self._validators]

    def encode(self, value: Any) -> bytes:
        if value.__class__ is not int:
            value = self.to_python(value)
        return str(value).encode()

    def decode(self, plaintext: bytes) -> int:
        return int(plaintext)


class EncryptedDecimalField(EncryptedMixin, _DecimalField):
    python_type_name = "Decimal"

    def encode(self, value: Any) -> bytes:
        value = self.to_python(value)
        if not value.is_finite():
            raise _validation(self, "must be a finite number")
        return str(value).encode()

    def decode(self, plaintext: bytes) -> Decimal:
        return Decimal(plaintext.decode())


class EncryptedBooleanField(EncryptedMixin, _BooleanField):
    python_type_name = "bool"

    def encode(self, value: Any) -> bytes:
        return b"1" if self.to_python(value) else b"0"

    def decode(self, plaintext: bytes) -> bool:
        return plaintext == b"1"


class EncryptedJSONField(EncryptedMixin, _JSONField):
    python_type_name = "JSON value"

    def encode(self, value: Any) -> bytes:
        try:
            text = json.dumps(value, cls=self.encoder, separators=(",", ":"), ensure_ascii=False)
        except (TypeError, ValueError) as exc:
            raise _validation(self, f"is not JSON serialisable ({type(exc).__name__})") from None
        return text.encode()

    def decode(self, plaintext: bytes) -> Any:
        return json.loads(plaintext, cls=self.decoder)


ENCRYPTED_FIELD_TYPES = (
    EncryptedTextField,
    EncryptedCharField,
    EncryptedDateField,
    EncryptedDateTimeField,
    EncryptedIntegerField,
    EncryptedDecimalField,
    EncryptedBooleanField,
    EncryptedJSONField,
)


def encrypted_fields(model: type[models.Model]) -> list[EncryptedMixin]:
    """Every encrypted field of ``model`` (the field registry re-encryption walks)."""
    return [f for f in model._meta.concrete_fields if isinstance(f, EncryptedMixin)]


@receiver(class_prepared)
def _bind_primary_key(sender: type[models.Model], **kwargs: Any) -> None:
    """Tell each encrypted field where its row's primary key lives (known once the class is)."""
    pk = sender._meta.pk
    if pk is None:
        return
    integrity = getattr(sender, "row_integrity", None)
    probes = {name: f for f in sender._meta.concrete_fields if (name := _probe_source(f)) is not None}
    for field in sender._meta.concrete_fields:
        if isinstance(field, EncryptedMixin):
            field.pk_attname = pk.attname
            field.probe = probes.get(field.name) if field.search else None
            if integrity is not None and not sender._meta.abstract:
                owner = cast("models.Field[Any, Any]", sender._meta.get_field(integrity.owner)).attname
                field._context_of = make_row_context(owner, integrity.version)
                field._on_failure = integrity.reporter(sender)
            field._bind_reader()
