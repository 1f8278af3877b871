"""The in-process keyring: unwrapped data keys and ready cipher objects, cached with a TTL.

Guarantees: the hot path (encrypting or decrypting a field) does one dict lookup and one
monotonic-clock read, never an unwrap or a query; keys are re-read from the database after
the TTL, so a rotation or a destroyed key is seen by every process within the TTL; the
first use of a purpose creates its data key. Plaintext keys live only in this process's
memory.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.db import DEFAULT_DB_ALIAS, IntegrityError, connections, transaction
from django.views.decorators.debug import sensitive_variables

from keys import envelope
from keys.conf import keys_settings
from keys.exceptions import DecryptionError, KeysError, ProviderError, UnknownKeyError

if TYPE_CHECKING:
    from keys.models import DataKey

_monotonic = time.monotonic


class ActiveKey:
    """The active data key of a purpose, with a budget of encryptions reserved in the database.

    Encrypting spends one unit of ``budget``; when it runs out the keyring reserves another
    block with one atomic UPDATE, so the stored count is an upper bound on the encryptions
    ever made under the key — never an under-count, even if a request rolls back.
    """

    __slots__ = ("aead", "budget", "expires", "header", "key_id")

    def __init__(self, key_id: int, header: bytes, aead: AESGCM, expires: float, budget: int) -> None:
        self.key_id = key_id
        self.header = header
        self.aead = aead
        self.expires = expires
        self.budget = budget


@dataclass(frozen=True)
class IndexKey:
    key_id: int
    prefix: bytes
    secret: bytes = field(repr=False)  # repr() never prints key material


IndexMac = tuple[bytes, hmac.HMAC]  # (4-byte key-id prefix, HMAC keyed for one field)


class Keyring:
    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._active: dict[str, ActiveKey] = {}
        # Keyed by the 5-byte envelope header (version + key id): a lookup needs no parsing,
        # and a header with an unknown version simply misses. Expiry is enforced by tick(),
        # which readers call once per row rather than once per value.
        self._aeads: dict[bytes, AESGCM] = {}
        self._deadlines: dict[bytes, float] = {}
        self._next_deadline = float("inf")
        self._index: tuple[list[IndexKey], float] | None = None
        self._index_macs: dict[bytes, tuple[list[IndexMac], float]] = {}
        self._mac_keys: dict[str, tuple[list[IndexKey], float]] = {}

    def clear(self) -> None:
        from keys.flight import provider_calls

        provider_calls.clear()
        with self._lock:
            self._active.clear()
            self._aeads.clear()
            self._deadlines.clear()
            self._next_deadline = float("inf")
            self._index = None
            self._index_macs.clear()
            self._mac_keys.clear()

    # -- encryption --------------------------------------------------------------------
    def active(self, purpose: str) -> ActiveKey:
        """The key to encrypt with; the caller spends one unit of its ``budget``.

        Raises KeysError for a MAC purpose (``index``, ``audit``, ``identity``): those keys
        authenticate and never encrypt.
        """
        entry = self._active.get(purpose)
        if entry is not None and entry.expires > _monotonic() and entry.budget > 0:
            return entry
        if purpose in ("index", "audit", "identity"):
            raise KeysError(f"{purpose} keys authenticate (HMAC) and never encrypt")
        return self._load_active(purpose)

    @sensitive_variables("secret")
    def _load_active(self, purpose: str) -> ActiveKey:
        while True:
            entry = self._active.get(purpose)
            fresh = entry is not None and entry.expires > _monotonic()
            if not fresh:
                # The query and the unwrap run outside the lock (keys.flight: one provider
                # call per key, a deadline per caller), so a slow provider holds up nobody else.
                datakey = ensure_active_datakey(purpose)
                secret = _unwrap(datakey)
            with self._lock:
                entry = self._active.get(purpose)
                if entry is not None and entry.expires > _monotonic() and (fresh or entry.key_id == datakey.pk):
                    if entry.budget <= 0:
                        entry.budget = reserve_encryptions(entry.key_id, purpose)
                    return entry
                if fresh:
                    continue  # it expired meanwhile: load it (outside the lock)
                expires = _monotonic() + keys_settings.CACHE_TTL
                aead = AESGCM(secret)
                header = envelope.header_for(datakey.pk)
                # The TTL ran out but the key is the same: keep the budget already reserved.
                left = entry.budget if entry is not None and entry.key_id == datakey.pk else 0
                budget = left if left > 0 else reserve_encryptions(datakey.pk, purpose)
                entry = ActiveKey(datakey.pk, header, aead, expires, budget)
                self._active[purpose] = entry
                self._remember(header, aead, expires)
                return entry

    def _remember(self, header: bytes, aead: AESGCM, expires: float) -> None:
        self._aeads[header] = aead
        self._deadlines[header] = expires
        self._next_deadline = min(self._next_deadline, expires)

    def tick(self) -> None:
        """Drop cached decryption keys whose TTL has passed (cheap when none has)."""
        if _monotonic() < self._next_deadline:
            return
        with self._lock:
            now = _monotonic()
            for header, deadline in list(self._deadlines.items()):
                if deadline <= now:
                    self._aeads.pop(header, None)
                    del self._deadlines[header]
            self._next_deadline = min(self._deadlines.values(), default=float("inf"))

    # -- decryption --------------------------------------------------------------------
    def aead(self, key_id: int) -> AESGCM:
        """The cipher of data key ``key_id``; UnknownKeyError when no usable key has that id."""
        if not 0 < key_id <= envelope.MAX_KEY_ID:
            raise UnknownKeyError("no data key can have this id", key_id=key_id)
        return self.aead_for_header(envelope.header_for(key_id))

    def aead_for_header(self, header: bytes) -> AESGCM:
        """The cipher for an envelope's 5-byte header; a DecryptionError subclass when the
        header is malformed or names no usable field/file/session key."""
        self.tick()
        aead = self._aeads.get(header)
        if aead is not None:
            return aead
        return self._load_aead(header)

    def _load_aead(self, header: bytes) -> AESGCM:
        from keys.models import DataKey

        if len(header) != envelope.HEADER_SIZE:
            raise DecryptionError(f"an envelope header is {envelope.HEADER_SIZE} bytes, not {len(header)}")
        key_id = envelope.read_key_id(header + bytes(envelope.OVERHEAD - envelope.HEADER_SIZE))
        datakey = DataKey.objects.usable().filter(pk=key_id).first()
        if datakey is None or datakey.purpose in DataKey.MAC_PURPOSES:
            raise UnknownKeyError("unknown or destroyed data key", key_id=key_id)
        aead = AESGCM(_unwrap(datakey))  # outside the lock: see _load_active
        with self._lock:
            self._remember(header, aead, _monotonic() + keys_settings.CACHE_TTL)
            return aead

    # -- blind indexes -----------------------------------------------------------------
    def index_keys(self) -> list[IndexKey]:
        """Index keys that may have written stored index values, the active one first."""
        cached = self._index
        if cached is not None and cached[1] > _monotonic():
            return cached[0]
        return self._load_index_keys()

    def _load_index_keys(self) -> list[IndexKey]:
        from keys.models import DataKey

        active = ensure_active_datakey(DataKey.Purpose.INDEX)
        others = (
            DataKey.objects.usable()
            .filter(purpose=DataKey.Purpose.INDEX)
            .exclude(pk=active.pk)
            .exclude(status=DataKey.Status.RETIRED)
            .order_by("-pk")
        )
        keys = [IndexKey(dk.pk, dk.pk.to_bytes(4, "big"), _unwrap(dk)) for dk in [active, *others]]
        with self._lock:
            self._index = (keys, _monotonic() + keys_settings.CACHE_TTL)
            self._index_macs.clear()
            return keys

    def index_macs(self, label: bytes) -> list[IndexMac]:
        """Per-field HMAC states under every usable index key, the active key first.

        Each field gets its own HMAC key (derived from the index key and the field's label),
        so equal plaintexts in different fields index differently. Callers ``copy()`` a state
        before updating it.
        """
        cached = self._index_macs.get(label)
        if cached is not None and cached[1] > _monotonic():
            return cached[0]
        keys = self.index_keys()
        expires = self._index[1] if self._index else _monotonic()
        macs = [(k.prefix, _field_mac(k.secret, label)) for k in keys]
        self._index_macs[label] = (macs, expires)
        return macs

    # -- other MAC keys (audit chain, database identity) ---------------------------------
    def mac_keys(self, purpose: str) -> list[IndexKey]:
        """Usable keys of a MAC purpose (``audit``, ``identity``), the active one first.

        The active key signs; every key not destroyed still verifies what it signed, so a
        rotation never invalidates an old signature.
        """
        cached = self._mac_keys.get(purpose)
        if cached is not None and cached[1] > _monotonic():
            return cached[0]
        from keys.models import DataKey

        if purpose not in (DataKey.Purpose.AUDIT, DataKey.Purpose.IDENTITY):
            raise KeysError(f"{purpose!r} is not a MAC purpose; expected audit or identity")
        active = ensure_active_datakey(purpose)
        others = DataKey.objects.usable().filter(purpose=purpose).exclude(pk=active.pk).order_by("-pk")
        keys = [IndexKey(dk.pk, dk.pk.to_bytes(4, "big"), _unwrap(dk)) for dk in [active, *others]]
        with self._lock:
            self._mac_keys[purpose] = (keys, _monotonic() + keys_settings.CACHE_TTL)
        return keys


def _field_mac(secret: bytes, label: bytes) -> hmac.HMAC:
    derive = hmac.HMAC(secret, hashes.SHA256())
    derive.update(b"neonpro.blind-index.v1\x00" + label)
    return hmac.HMAC(derive.finalize(), hashes.SHA256())


def reserve_encryptions(key_id: int, purpose: str) -> int:
    """Reserve a block of encryptions under ``key_id``; return how many were reserved.

    The reservation commits on its own connection (alias ``keys`` when configured), so it
    counts even if the caller's transaction rolls back. Raises EncryptionError once the key
    has reached the hard limit (NIST SP 800-38D: 2^32 random-nonce encryptions per key).
    """
    from keys.exceptions import EncryptionError

    if purpose in ("index", "audit", "identity"):  # HMAC keys have no nonce to wear out
        return 1 << 62
    block = keys_settings.COUNT_BLOCK
    row = None
    # A key created by the caller's still-open transaction is invisible to the side
    # connection; then the reservation shares that transaction's fate, as the key does.
    for alias in dict.fromkeys([keys_settings.COUNTER_DB_ALIAS, DEFAULT_DB_ALIAS]):
        with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
            cursor.execute(
                "UPDATE keys_datakey SET encryption_count = encryption_count + %s WHERE id = %s "
                "RETURNING encryption_count",
                [block, key_id],
            )
            row = cursor.fetchone()
        if row is not None:
            break
    if row is None:
        raise EncryptionError(f"data key {key_id} disappeared while reserving encryptions")
    if row[0] > HARD_LIMIT:
        raise EncryptionError(
            f"data key {key_id} reached the {HARD_LIMIT} encryption limit; rotate it (`manage.py keys rotate`)"
        )
    return block


HARD_LIMIT = 2**32 - 2**20  # NIST SP 800-38D bound for random 96-bit nonces, minus a margin


@sensitive_variables()
def _unwrap(datakey: DataKey) -> bytes:
    """Unwrap a data key through keys.flight (single flight per key, deadline, failures cached)."""
    from keys.flight import provider_calls
    from keys.models import DataKey
    from keys.providers import provider_for

    assert isinstance(datakey, DataKey)
    blob, master, context = bytes(datakey.wrapped_key), datakey.wrapping_key_id, datakey.wrap_context()
    try:
        secret = provider_calls.call(
            ("datakey", datakey.pk, master, blob),
            lambda: provider_for(master).unwrap_key(blob, key_id=master, context=context),
            master_key_id=master,
        )
    except ProviderError as exc:
        raise type(exc)(f"data key {datakey.pk} ({datakey.purpose}): {exc}", permanent=exc.permanent) from None
    if len(secret) != 32:
        raise DecryptionError("unwrapped data key has the wrong length", key_id=datakey.pk)
    return secret


def ensure_active_datakey(purpose: str) -> DataKey:
    """Return the active data key for ``purpose``, creating it on first use."""
    from keys.models import DataKey
    from keys.services import create_data_key

    if purpose not in DataKey.Purpose.values:
        raise KeysError(f"unknown key purpose {purpose!r}; expected one of {', '.join(DataKey.Purpose.values)}")
    datakey = DataKey.objects.active(purpose).first()
    if datakey is not None:
        return datakey
    try:
        with transaction.atomic():
            return create_data_key(purpose)
    except IntegrityError:
        # Another process created it first: the partial unique index lets only one win.
        return DataKey.objects.active(purpose).get()


keyring = Keyring()
