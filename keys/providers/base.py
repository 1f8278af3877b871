"""The key-provider contract.

A provider holds master keys (KEKs) and wraps/unwraps data keys with them. Master-key
material never leaves a provider through this interface: callers only ever see wrapped
blobs and key ids. Local files, PKCS#11 HSMs and external KMSs all implement it.
"""

from __future__ import annotations

import abc
import datetime as dt
from dataclasses import dataclass


@dataclass(frozen=True)
class WrappedKey:
    """A data key wrapped by the master key ``key_id``."""

    key_id: str
    blob: bytes


@dataclass(frozen=True)
class MasterKeyInfo:
    key_id: str
    provider: str
    created_at: dt.datetime | None = None
    state: str = "enabled"
    current: bool = False


class KeyProvider(abc.ABC):
    """Base class of every key provider.

    All methods raise :class:`keys.exceptions.ProviderError` (``permanent=False`` for
    failures a retry can cure, such as a time-out) and
    :class:`keys.exceptions.MasterKeyError` when the master key is missing or is not the one
    that wrapped a blob.
    """

    name: str = "base"

    @classmethod
    @abc.abstractmethod
    def from_settings(cls) -> KeyProvider:
        """Build the provider from Django settings (read now, not at import)."""

    @property
    @abc.abstractmethod
    def current_key_id(self) -> str:
        """Id of the master key that wraps new data keys."""

    @abc.abstractmethod
    def create_key(self, *, label: str) -> str:
        """Create a new master key and return its id (it does not become current)."""

    @abc.abstractmethod
    def wrap_key(self, plaintext_key: bytes, *, context: bytes) -> WrappedKey:
        """Wrap a data key under the current master key, binding ``context`` as AAD."""

    @abc.abstractmethod
    def unwrap_key(self, blob: bytes, *, key_id: str, context: bytes) -> bytes:
        """Unwrap a data key wrapped by master key ``key_id`` with the same ``context``.

        Raises MasterKeyError when this provider does not hold ``key_id``, and
        ProviderError when the blob does not authenticate.
        """

    @abc.abstractmethod
    def list_keys(self) -> list[MasterKeyInfo]:
        """Every master key this provider can use."""

    @abc.abstractmethod
    def schedule_key_deletion(self, key_id: str, *, pending_days: int) -> dt.datetime:
        """Schedule deletion of a master key; return when it will be deleted."""

    def holds(self, key_id: str) -> bool:
        """Whether this provider can unwrap with master key ``key_id`` (no network call)."""
        return key_id == self.current_key_id

    def check_value(self, key_id: str) -> str | None:
        """A one-way value identifying the exact key material of master key ``key_id``, for
        providers whose key ids do not (a PKCS#11 label can be reused); None when the id itself
        identifies the key (a local key's fingerprint, a KMS key ARN)."""
        return None

    def health(self) -> None:  # noqa: B027 - optional hook, default is healthy
        """Raise ProviderError when the provider cannot serve requests."""
