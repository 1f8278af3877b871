"""The one crypto API the rest of NeonPro calls.

``encrypt``/``decrypt`` produce and open envelope v1 values under the active data key of a
purpose; ``blind_index`` computes keyed, deterministic search tokens. ``context`` is the
associated data that binds a value to where it lives (for fields: ``app.model.field`` and
the row's UUID); decrypting with a different context fails. ``sign``/``verify_signature``
are HMAC-SHA256 tags under the keys of a MAC purpose (``audit``, ``identity``), each under a
key derived for one ``label``, so one data key never signs two kinds of thing alike.
"""

from __future__ import annotations

import hashlib
import hmac as _hmac
from typing import TYPE_CHECKING

from keys import envelope
from keys.keyring import keyring

if TYPE_CHECKING:
    from cryptography.hazmat.primitives import hmac

INDEX_SIZE = 16


def _as_bytes(context: bytes | str) -> bytes:
    return context.encode() if isinstance(context, str) else context


def encrypt(plaintext: bytes, *, context: bytes | str, purpose: str = "field") -> bytes:
    """Encrypt ``plaintext`` under the active data key for ``purpose``."""
    key = keyring.active(purpose)
    key.budget -= 1
    return envelope.seal(key.aead, key.header, plaintext, _as_bytes(context))


def decrypt(token: bytes, *, context: bytes | str) -> bytes:
    """Decrypt an envelope; raises a DecryptionError subclass on any failure.

    The key is looked up by the envelope's own header, so a header naming an id that no
    data key can have (0, which per-subject blobs carry) is an unknown key, not a crash.
    """
    token = bytes(token)
    key_id = envelope.read_key_id(token)
    aead = keyring.aead_for_header(token[: envelope.HEADER_SIZE])
    return envelope.open_sealed(aead, token, _as_bytes(context), key_id)


def blind_index(normalized: str, *, context: bytes | str) -> bytes:
    """Index token of an already-normalised value under the active index key."""
    prefix, mac = keyring.index_macs(_as_bytes(context))[0]
    return index_token(prefix, mac, normalized)


def blind_index_candidates(normalized: str, *, context: bytes | str) -> list[bytes]:
    """Index tokens of a value under every index key still in use (for lookups mid-rotation)."""
    return [index_token(prefix, mac, normalized) for prefix, mac in keyring.index_macs(_as_bytes(context))]


def index_token(prefix: bytes, mac: hmac.HMAC, normalized: str) -> bytes:
    """``prefix`` (the index key id) followed by the truncated HMAC of the normalised value."""
    h = mac.copy()
    h.update(normalized.encode())
    return prefix + h.finalize()[:INDEX_SIZE]


def chain_hash(previous: bytes, payload: bytes) -> bytes:
    """SHA-256(previous ‖ payload): one link of a tamper-evident hash chain."""
    return hashlib.sha256(previous + payload).digest()


def fingerprint(data: bytes) -> str:
    """Hex SHA-256 of ``data``: a stable, one-way stand-in for a value that must not be stored."""
    return hashlib.sha256(data).hexdigest()


def _derived(secret: bytes, label: bytes) -> bytes:
    return _hmac.digest(secret, b"neonpro.mac.v1\x00" + label, "sha256")


def sign(data: bytes, *, purpose: str, label: bytes, key_id: int | None = None) -> tuple[int, bytes]:
    """(key id, 32-byte HMAC-SHA256 tag) of ``data`` under the active key of ``purpose``.

    ``key_id`` picks another usable key instead (the newest one a verifier holds, while a
    rotation is being rolled out to it); raises KeysError when no usable key has that id.
    """
    if key_id is None:
        key = keyring.mac_keys(purpose)[0]
        return key.key_id, _hmac.digest(_derived(key.secret, label), data, "sha256")
    return key_id, _hmac.digest(derived_key(purpose=purpose, label=label, key_id=key_id), data, "sha256")


def sign_all(data: bytes, *, purpose: str, label: bytes) -> list[tuple[int, bytes]]:
    """``sign`` under every usable key of ``purpose``, the active one first: to find what a
    key that has since been rotated signed."""
    return [
        (key.key_id, _hmac.digest(_derived(key.secret, label), data, "sha256")) for key in keyring.mac_keys(purpose)
    ]


def verify_signature(data: bytes, tag: bytes, *, purpose: str, label: bytes, key_id: int) -> bool:
    """Whether ``tag`` is the signature of ``data`` by key ``key_id`` (compared in constant time).

    False as well when no usable key of ``purpose`` has that id (destroyed, or never one).
    """
    for key in keyring.mac_keys(purpose):
        if key.key_id == key_id:
            return _hmac.compare_digest(_hmac.digest(_derived(key.secret, label), data, "sha256"), tag)
    return False


def derived_key(*, purpose: str, label: bytes, key_id: int) -> bytes:
    """The signing key ``sign`` uses for ``label`` under key ``key_id`` — only for installing
    where another component must verify (the database's identity check); never log it.

    Raises KeysError when no usable key of ``purpose`` has that id.
    """
    from keys.exceptions import KeysError

    for key in keyring.mac_keys(purpose):
        if key.key_id == key_id:
            return _derived(key.secret, label)
    raise KeysError(f"no usable {purpose} key {key_id}")
