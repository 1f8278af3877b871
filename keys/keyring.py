"""The in-process keyring: unwrapped data keys and ready cipher objects, cached with a TTL.

Guarantees: the hot path (encrypting or decrypting a field) does one dict lookup and one
monotonic-clock read, never an unwrap or a query; keys are re-read from the database after
the TTL, so a rotation or a destroyed key is seen by every process within the TTL; the
first use of a purpose creates its data key. Plaintext keys live only in this process's
memory.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.db import IntegrityError, transaction

from keys import envelope
from keys.conf import keys_settings
from keys.exceptions import DecryptionError, KeysError, ProviderError, UnknownKeyError
from keys.providers import get_provider

_monotonic = time.monotonic


@dataclass(frozen=True)
class ActiveKey:
    key_id: int
    header: bytes
    aead: AESGCM
    expires: float


@dataclass(frozen=True)
class IndexKey:
    key_id: int
    prefix: bytes
    secret: bytes


class Keyring:
    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._active: dict[str, ActiveKey] = {}
        self._aeads: dict[int, tuple[AESGCM, float]] = {}
        self._index: tuple[list[IndexKey], float] | None = None
        self._subkeys: dict[tuple[int, bytes], bytes] = {}

    def clear(self) -> None:
        with self._lock:
            self._active.clear()
            self._aeads.clear()
            self._index = None
            self._subkeys.clear()

    # -- encryption --------------------------------------------------------------------
    def active(self, purpose: str) -> ActiveKey:
        entry = self._active.get(purpose)
        if entry is not None and entry.expires > _monotonic():
            return entry
        return self._load_active(purpose)

    def _load_active(self, purpose: str) -> ActiveKey:
        with self._lock:
            datakey = ensure_active_datakey(purpose)
            secret = _unwrap(datakey)
            expires = _monotonic() + keys_settings.CACHE_TTL
            aead = AESGCM(secret)
            entry = ActiveKey(datakey.pk, envelope.header_for(datakey.pk), aead, expires)
            self._active[purpose] = entry
            self._aeads[datakey.pk] = (aead, expires)
            return entry

    # -- decryption --------------------------------------------------------------------
    def aead(self, key_id: int) -> AESGCM:
        entry = self._aeads.get(key_id)
        if entry is not None and entry[1] > _monotonic():
            return entry[0]
        return self._load_aead(key_id)

    def _load_aead(self, key_id: int) -> AESGCM:
        from keys.models import DataKey

        with self._lock:
            datakey = DataKey.objects.usable().filter(pk=key_id).first()
            if datakey is None or datakey.purpose == DataKey.Purpose.INDEX:
                raise UnknownKeyError("unknown or destroyed data key", key_id=key_id)
            aead = AESGCM(_unwrap(datakey))
            self._aeads[key_id] = (aead, _monotonic() + keys_settings.CACHE_TTL)
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

        with self._lock:
            active = ensure_active_datakey(DataKey.Purpose.INDEX)
            others = (
                DataKey.objects.usable()
                .filter(purpose=DataKey.Purpose.INDEX)
                .exclude(pk=active.pk)
                .exclude(status=DataKey.Status.RETIRED)
                .order_by("-pk")
            )
            keys = [IndexKey(dk.pk, dk.pk.to_bytes(4, "big"), _unwrap(dk)) for dk in [active, *others]]
            self._index = (keys, _monotonic() + keys_settings.CACHE_TTL)
            self._subkeys.clear()
            return keys

    def subkey(self, key: IndexKey, label: bytes) -> bytes:
        """Per-field HMAC key, so equal plaintexts in different fields index differently."""
        cache_key = (key.key_id, label)
        sub = self._subkeys.get(cache_key)
        if sub is None:
            sub = hmac.digest(key.secret, b"neonpro.blind-index.v1\x00" + label, hashlib.sha256)
            self._subkeys[cache_key] = sub
        return sub


def _unwrap(datakey: object) -> bytes:
    from keys.models import DataKey

    assert isinstance(datakey, DataKey)
    try:
        secret = get_provider().unwrap_key(
            bytes(datakey.wrapped_key), key_id=datakey.wrapping_key_id, context=datakey.wrap_context()
        )
    except ProviderError as exc:
        raise type(exc)(f"data key {datakey.pk} ({datakey.purpose}): {exc}", permanent=exc.permanent) from None
    if len(secret) != 32:
        raise DecryptionError("unwrapped data key has the wrong length", key_id=datakey.pk)
    return secret


def ensure_active_datakey(purpose: str) -> object:
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
