"""Errors raised by the encryption core.

Every failure to decrypt is a :class:`DecryptionError`, whatever its cause, so callers
handle one family. Messages name where the failure happened (model, field, primary key,
data-key id) and never contain plaintext or key material.
"""

from __future__ import annotations

from typing import Any


class KeysError(Exception):
    """Base class of every error raised by the ``keys`` app."""


class DecryptionError(KeysError):
    """A value could not be decrypted or authenticated.

    ``reason`` is a short, fixed description of what went wrong; ``key_id`` the data key the
    envelope names (``None`` when it could not be read); ``where`` names the value's home
    (``app.model.field`` and the row's primary key) once a field knows it.
    """

    def __init__(self, reason: str, *, key_id: int | None = None, where: str | None = None) -> None:
        self.reason = reason
        self.key_id = key_id
        self.where = where
        super().__init__(self._message())

    def _message(self) -> str:
        parts = ["cannot decrypt"]
        if self.where:
            parts.append(self.where)
        message = " ".join(parts) + f": {self.reason}"
        if self.key_id is not None:
            message += f" (data key {self.key_id})"
        return message

    def at(self, where: str) -> DecryptionError:
        """Return a copy of this error that names where the value lives."""
        error = type(self)(self.reason, key_id=self.key_id, where=where)
        error.__cause__ = self.__cause__
        return error

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.reason, self.key_id, self.where))


def _rebuild(cls: type[DecryptionError], reason: str, key_id: int | None, where: str | None) -> DecryptionError:
    return cls(reason, key_id=key_id, where=where)


class TruncatedError(DecryptionError):
    """The stored value is shorter than the smallest valid envelope."""


class UnsupportedVersionError(DecryptionError):
    """The envelope's version byte is not one this code can read."""


class UnknownKeyError(DecryptionError):
    """The envelope names a data key that does not exist (or was destroyed)."""


class AuthenticationError(DecryptionError):
    """The AEAD tag did not verify: the value was altered, truncated inside its
    ciphertext, or moved from another row or column."""


class RowIntegrityError(DecryptionError):
    """A sealed row (``keys.integrity``) failed its check: its linked columns or version were
    altered, it has no seal where one is required, or it changed while being edited."""

    def _message(self) -> str:
        message = "row integrity check failed"
        if self.where:
            message += f" for {self.where}"
        message += f": {self.reason}"
        if self.key_id is not None:
            message += f" (MAC key {self.key_id})"
        return message


class StaleRowError(KeysError):
    """A sealed row changed in the database after this copy of it was loaded; saving the
    copy would overwrite the newer values."""


class ProviderError(KeysError):
    """A key provider (local key file, HSM, external KMS) failed.

    ``permanent`` tells callers whether retrying can help: a wrong PIN or a missing key is
    permanent, a network time-out is not.
    """

    def __init__(self, message: str, *, permanent: bool = True) -> None:
        self.permanent = permanent
        super().__init__(message)


class MasterKeyError(ProviderError):
    """The master key (KEK) is missing, malformed, or is not the one that wrapped a data key."""


class EncryptionError(KeysError):
    """A value could not be encrypted (for example, a row without a primary key)."""
