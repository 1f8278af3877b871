"""Envelope v1: the byte format of every encrypted value.

Guarantees: AES-256-GCM with a fresh random 96-bit nonce per value; the header (format
version and data-key id) and the caller's context (``app.model.field`` plus the row's UUID)
are authenticated as associated data, so a value that is altered, truncated, or copied into
another row or column fails to decrypt. This module is pure: no Django, no key lookup.

Layout (big-endian)::

    offset  size  content
    0       1     version (0x01)
    1       4     data-key id (unsigned)
    5       12    nonce
    17      n+16  AES-GCM ciphertext of the n-byte plaintext, then the 16-byte tag

AAD = header (bytes 0..4) || context.
"""

from __future__ import annotations

import os
import struct
from typing import Protocol

from cryptography.exceptions import InvalidTag

from keys.exceptions import AuthenticationError, TruncatedError, UnsupportedVersionError

VERSION = 1
HEADER = struct.Struct(">BI")
HEADER_SIZE = HEADER.size
NONCE_SIZE = 12
TAG_SIZE = 16
OVERHEAD = HEADER_SIZE + NONCE_SIZE + TAG_SIZE
MAX_KEY_ID = 2**32 - 1

_urandom = os.urandom


class AEAD(Protocol):
    def encrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None) -> bytes: ...

    def decrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None) -> bytes: ...


def header_for(key_id: int) -> bytes:
    """The 5-byte header of an envelope written under ``key_id``."""
    if not 0 < key_id <= MAX_KEY_ID:
        raise ValueError(f"data-key id {key_id} does not fit in an envelope v1 header")
    return HEADER.pack(VERSION, key_id)


def seal(aead: AEAD, header: bytes, plaintext: bytes, context: bytes) -> bytes:
    """Encrypt ``plaintext`` into an envelope whose header is ``header``."""
    nonce = _urandom(NONCE_SIZE)
    return header + nonce + aead.encrypt(nonce, plaintext, header + context)


def read_key_id(token: bytes) -> int:
    """Return the data-key id an envelope names, after checking its length and version."""
    if len(token) < OVERHEAD:
        raise TruncatedError(f"value is {len(token)} bytes, shorter than the {OVERHEAD}-byte minimum")
    key_id: int  # struct's unpack_from is typed tuple[Any, ...]; ">BI" yields two ints
    version, key_id = HEADER.unpack_from(token)
    if version != VERSION:
        raise UnsupportedVersionError(f"unsupported envelope version {version}", key_id=None)
    return key_id


def open_sealed(aead: AEAD, token: bytes, context: bytes, key_id: int) -> bytes:
    """Decrypt an envelope whose key id was read with :func:`read_key_id`."""
    try:
        return aead.decrypt(token[HEADER_SIZE:17], token[17:], token[:HEADER_SIZE] + context)
    except InvalidTag:
        raise AuthenticationError(
            "authentication failed: the value was altered, truncated, or moved from another row or column",
            key_id=key_id,
        ) from None
