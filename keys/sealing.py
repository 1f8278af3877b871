"""The hot path of field encryption: one sealer and one reader per encrypted field.

Guarantees, the same as every envelope v1 value (``keys.envelope`` documents the layout and
is the reference the tests hold these functions to):

* each value gets a fresh 96-bit nonce from ``os.urandom`` and is sealed with AES-256-GCM
  under the active ``field`` data key, spending one unit of that key's reserved encryption
  budget (the keyring reserves more, or refuses at the hard limit, when it runs out);
* the associated data is header ‖ ``app.model.field`` ‖ NUL ‖ the row's 16 UUID bytes, and for
  searchable fields also the 20-byte blind-index token stored in front of the envelope, so a
  value moved to another row, column or index token fails to open;
* the active key and the index key are re-read once the key-cache TTL has passed;
* a malformed value raises a :class:`~keys.exceptions.DecryptionError` naming where it lives,
  never a bare ``ValueError`` or ``IndexError``.

Everything that does not change from one value to the next (the field's label, normaliser
and decoder, the keyring's dictionaries, the functions called) is bound once per field,
because the Python around each AES-GCM call used to cost three to four times the call.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from typing import Any

from cryptography.exceptions import InvalidTag

from keys import envelope
from keys.exceptions import AuthenticationError, DecryptionError
from keys.keyring import keyring

# Instance-dict keys: the primary key the row had when its ciphertexts were loaded, and
# (pk, its 16 bytes) so a row's fields share one conversion.
SEALED_PK = "_keys_sealed_pk"
ROW_CONTEXT = "_keys_row_context"
# For rows with integrity binding (keys.integrity): the owner and version bytes the row's
# ciphertexts were sealed for, as loaded (b"" for a legacy row, sealed with the v1 context).
ROW_BINDING = "_keys_row_binding"
BOUND_CONTEXT = b"\x02"  # marks the v2 context: pk ‖ 0x02 ‖ owner's 16 bytes ‖ 8-byte version
INDEX_TOKEN_SIZE = 20  # 4-byte index-key id + 16-byte truncated HMAC-SHA256
AUTH_FAILED = "authentication failed: the value was altered, truncated, or moved from another row or column"

Sealer = Callable[[bytes, Any, bytes], bytes]
Reader = Callable[..., Any]
RowContext = Callable[[dict[str, Any], Any, str], tuple[Any, bytes]]
OnFailure = Callable[[Any, DecryptionError], None]
_UUID = uuid.UUID
_monotonic = time.monotonic  # module-level, so tests can move the clock


def row_context(data: dict[str, Any], pk: Any, where: str) -> tuple[Any, bytes]:
    """(pk, its 16 UUID bytes), computed once per row and cached in its ``__dict__``.

    Also the once-per-row moment to let expired keys drop out of the key cache.
    """
    if pk is None:
        raise DecryptionError("the row has no primary key to authenticate against", where=where)
    keyring.tick()
    try:
        context = (pk, pk.bytes if pk.__class__ is _UUID else _UUID(str(pk)).bytes)
    except ValueError:
        raise DecryptionError("the row's primary key is not a UUID", where=where) from None
    data[ROW_CONTEXT] = context
    return context


def binding_of(data: dict[str, Any], owner: str, version: str, where: str) -> bytes:
    """The v2 context suffix (0x02 ‖ owner UUID ‖ version) of a row's current values; b"" at version 0."""
    if version not in data:  # only()/defer() left it out: the value cannot be authenticated
        raise DecryptionError(
            f"the row was loaded without {version!r}, which its encrypted values are bound to: "
            "include it (and the owner) in only()/defer()",
            where=where,
        )
    number = data[version]
    if not number:
        return b""
    value = data.get(owner)
    if value is None:
        raise DecryptionError("the row has no owner (or it was not loaded) to authenticate against", where=where)
    try:
        owner_bytes = value.bytes if value.__class__ is _UUID else _UUID(str(value)).bytes
    except ValueError:
        raise DecryptionError("the row's owner is not a UUID", where=where) from None
    return BOUND_CONTEXT + owner_bytes + int(number).to_bytes(8, "big")


def make_row_context(owner: str, version: str) -> RowContext:
    """A :func:`row_context` for models whose values are bound to their owner and version too.

    The bytes after the label are pk ‖ the binding the values were sealed for: the one
    recorded at load time (``ROW_BINDING``) or, for a row not loaded from the database, the
    binding of its current owner and version.
    """

    def bound_row_context(data: dict[str, Any], pk: Any, where: str) -> tuple[Any, bytes]:
        pk, pk_bytes = row_context(data, pk, where)
        binding = data.get(ROW_BINDING)
        if binding is None:
            binding = binding_of(data, owner, version, where)
        context = (pk, pk_bytes + binding)
        data[ROW_CONTEXT] = context
        return context

    return bound_row_context


def make_sealer(label: bytes, normalize: Callable[[str], str] | None) -> Sealer:
    """``seal(plaintext, value, row_uuid_bytes) -> stored bytes`` for one field.

    ``label`` is ``app.model.field`` followed by NUL; ``normalize`` the searchable field's
    normaliser (``value`` is what it indexes), or None for a field without a blind index.
    """
    active = keyring._active
    index_cache = keyring._index_macs
    load_key = keyring.active
    load_macs = keyring.index_macs
    urandom = os.urandom
    nonce_size = envelope.NONCE_SIZE

    if normalize is None:

        def seal(plaintext: bytes, value: Any, row: bytes) -> bytes:
            key = active.get("field")
            if key is None or key.budget <= 0 or key.expires <= _monotonic():
                key = load_key("field")
            key.budget -= 1
            nonce = urandom(nonce_size)
            header = key.header
            return header + nonce + key.aead.encrypt(nonce, plaintext, header + label + row)

        return seal

    def seal_searchable(plaintext: bytes, value: Any, row: bytes) -> bytes:
        now = _monotonic()
        key = active.get("field")
        if key is None or key.budget <= 0 or key.expires <= now:
            key = load_key("field")
        key.budget -= 1
        cached = index_cache.get(label)
        prefix, mac = load_macs(label)[0] if cached is None or cached[1] <= now else cached[0][0]
        digest = mac.copy()
        digest.update(normalize(value if value.__class__ is str else str(value)).encode())
        token = prefix + digest.finalize()[:16]
        nonce = urandom(nonce_size)
        header = key.header
        return token + header + nonce + key.aead.encrypt(nonce, plaintext, header + label + row + token)

    return seal_searchable


def make_reader(
    label: bytes,
    *,
    searchable: bool,
    decode: Callable[[bytes], Any],
    pk_attname: str,
    where: Callable[[Any], str],
    context_of: RowContext = row_context,
    on_failure: OnFailure | None = None,
) -> Reader:
    """``read(data, stored, pk=None) -> value`` for one field.

    ``data`` is the instance ``__dict__``; ``pk`` the row the value was sealed for (default:
    the primary key it was loaded with); ``where(pk)`` names the value in errors;
    ``context_of`` computes the row's context bytes; ``on_failure(pk, error)`` hears of every
    failure before it is raised.
    """
    aeads = keyring._aeads
    load_aead = keyring.aead_for_header
    start = INDEX_TOKEN_SIZE if searchable else 0
    header_end = start + envelope.HEADER_SIZE
    nonce_end = header_end + envelope.NONCE_SIZE
    shortest = start + envelope.OVERHEAD
    field_label = label[:-1].decode()

    def slow_key(stored: bytes, header: bytes) -> Any:
        envelope.read_key_id(stored[start:])  # length and version first: they name the failure
        return load_aead(header)

    def read(data: dict[str, Any], stored: bytes, pk: Any = None) -> Any:
        if pk is None:
            pk = data.get(SEALED_PK) or data.get(pk_attname)
        row = data.get(ROW_CONTEXT)
        if row is None or row[0] is not pk:
            row = context_of(data, pk, field_label)
        header = stored[start:header_end]
        aead = aeads.get(header)
        try:
            if aead is None or len(stored) < shortest:
                aead = slow_key(stored, header)
            aad = header + label + row[1] + stored[:start] if start else header + label + row[1]
            return decode(aead.decrypt(stored[header_end:nonce_end], stored[nonce_end:], aad))
        except InvalidTag:
            error: DecryptionError = AuthenticationError(
                AUTH_FAILED, key_id=int.from_bytes(header[1:], "big"), where=where(pk)
            )
            if on_failure is not None:
                on_failure(pk, error)
            raise error from None
        except DecryptionError as exc:
            error = exc.at(where(pk))
            if on_failure is not None:
                on_failure(pk, error)
            raise error from None

    return read


SEAL_CHUNK = 1000  # values sealed between two looks at the keyring (rotation, TTL, budget)


def make_column_sealer(
    label: bytes,
    normalize: Callable[[str], str] | None,
    *,
    attname: str,
    pk_attname: str,
    encode: Callable[[Any], bytes],
    stash: str,
    context_of: RowContext = row_context,
) -> Callable[[list[dict[str, Any]]], int]:
    """``seal_column(instance_dicts)``: seal one field of many rows at once (``bulk_create``).

    The envelopes are exactly those :func:`make_sealer` makes, each with its own nonce; the
    keyring is consulted once per :data:`SEAL_CHUNK` values (their encryptions taken from the
    key's budget up front) instead of once per value. Each token is left in the row's
    ``__dict__`` under ``stash``, with the value and primary key it was sealed for, for the
    field's ``pre_save`` to take — only if both are still the row's. Rows whose value is NULL
    or ciphertext, or that have no primary key yet, are left to ``pre_save``.
    """
    urandom = os.urandom
    nonce_size = envelope.NONCE_SIZE
    where = label[:-1].decode()

    def seal_column(rows: list[dict[str, Any]]) -> int:
        todo = []
        for data in rows:
            value = data.get(attname)
            if value is not None and value.__class__ is not bytes and data.get(pk_attname) is not None:
                todo.append(data)
        done, total = 0, len(todo)
        while done < total:
            key = keyring.active("field")  # reserves a new block, or refuses at the hard limit
            # active() hands out a key with budget left; never take less than one or more than reserved.
            take = max(1, min(key.budget, total - done, SEAL_CHUNK))
            key.budget -= take
            header, encrypt = key.header, key.aead.encrypt
            head = header + label
            if normalize is not None:
                prefix, mac = keyring.index_macs(label)[0]
            for data in todo[done : done + take]:
                pk = data[pk_attname]
                row = data.get(ROW_CONTEXT)
                if row is None or row[0] is not pk:
                    row = context_of(data, pk, where)
                value = data[attname]
                nonce = urandom(nonce_size)
                if normalize is None:
                    data[stash] = (value, pk, header + nonce + encrypt(nonce, encode(value), head + row[1]))
                else:
                    digest = mac.copy()
                    digest.update(normalize(value if value.__class__ is str else str(value)).encode())
                    token = prefix + digest.finalize()[:16]
                    sealed = token + header + nonce + encrypt(nonce, encode(value), head + row[1] + token)
                    data[stash] = (value, pk, sealed)
            done += take
        return total

    return seal_column
