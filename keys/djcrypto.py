"""Read values written by django-cryptography(-django5) ``encrypt()`` fields, to import them.

Guarantees:

* Decryption uses the package's own primitives (``FernetBytes``, ``FernetSigner``,
  ``pbkdf2``), keyed with the key material the operator passes in, never with whatever the
  package derived from this process's settings.
* A token is unpickled only after its HMAC-SHA256 verified under the given SECRET_KEY, so
  only bytes written by the holder of that key (the old app) are ever unpickled.
* Failures are reported as an outcome, never with the value.

Token layout (django-cryptography ``FernetBytes``, stored as ``bytea``)::

    0x80 | 8-byte timestamp | 16-byte IV | AES-CBC ciphertext (PKCS7) | HMAC-SHA256 of all before

The HMAC key is the SECRET_KEY itself; the AES key is PBKDF2-HMAC-SHA256 (30 000 rounds,
32 bytes) of CRYPTOGRAPHY_KEY, or of SECRET_KEY when it is unset, salted with
CRYPTOGRAPHY_SALT (default ``"django-cryptography"``). The value inside is ``pickle.dumps``
of the field's Python value.
"""

from __future__ import annotations

import pickle
from enum import Enum
from typing import Any

VERSION = 0x80
_FIXED = 1 + 8 + 16 + 32  # version, timestamp, IV, HMAC
DEFAULT_SALT = "django-cryptography"
ITERATIONS = 30_000  # fixed in django_cryptography.conf.CryptographyConf.configure


class Outcome(Enum):
    OK = "ok"
    FORGED = "forged"  # the HMAC does not verify: wrong SECRET_KEY, or the bytes were altered
    GARBLED = "garbled"  # authentic, but not a pickle once decrypted: wrong CRYPTOGRAPHY_KEY or salt


def looks_like_token(token: bytes) -> bool:
    """True when ``token`` has the shape of a django-cryptography value (not proof)."""
    return len(token) >= _FIXED + 16 and token[0] == VERSION and (len(token) - _FIXED) % 16 == 0


class OldKey:
    """The old app's key material, ready to open its tokens.

    ``cryptography_key`` is the old CRYPTOGRAPHY_KEY if it set one (else the AES key is
    derived from ``secret_key``); ``salt`` its CRYPTOGRAPHY_SALT if it changed it.
    """

    def __init__(
        self, secret_key: str | bytes, cryptography_key: str | bytes | None = None, salt: str | bytes | None = None
    ) -> None:
        # Imported here: importing django_cryptography derives a key from settings at once.
        from cryptography.hazmat.primitives import hashes
        from django_cryptography.core.signing import FernetSigner
        from django_cryptography.utils.crypto import FernetBytes, pbkdf2

        if not secret_key:
            raise ValueError("the old SECRET_KEY is empty: django-cryptography keys every value's HMAC with it")
        password = secret_key if cryptography_key is None else cryptography_key
        if not password:
            raise ValueError("the old CRYPTOGRAPHY_KEY is empty")
        aes_key = pbkdf2(password, DEFAULT_SALT if salt is None else salt, ITERATIONS, 32, hashes.SHA256())
        self._fernet = FernetBytes(aes_key, FernetSigner(secret_key))

    def open(self, token: bytes) -> tuple[Outcome, Any]:
        """(OK, value), or (FORGED, None), or (GARBLED, None)."""
        from django.core.signing import BadSignature
        from django_cryptography.utils.crypto import InvalidToken

        try:
            plaintext = self._fernet.decrypt(token)  # verifies the HMAC before it decrypts
        except BadSignature:
            return Outcome.FORGED, None
        except InvalidToken:
            return Outcome.GARBLED, None
        if len(plaintext) < 2 or plaintext[0] != 0x80 or not 2 <= plaintext[1] <= 5:
            return Outcome.GARBLED, None  # no pickle header: random bytes from a wrong AES key
        try:
            # Safe to unpickle: the HMAC above proves the holder of the old SECRET_KEY wrote it.
            return Outcome.OK, pickle.loads(plaintext)  # noqa: S301
        except Exception:
            return Outcome.GARBLED, None
