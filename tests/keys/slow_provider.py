"""A key provider that answers slowly or not at all, behind the real KeyProvider interface.

Wraps like the local provider (AES-256-GCM under a fixed test key); ``unwrap_key`` sleeps
``SlowProvider.delay`` seconds first, then fails when ``SlowProvider.failing`` (as an
unreachable KMS would after its time-outs). Class-level counters record how many unwraps ran
and how many ran at once.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
import time

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from keys.exceptions import ProviderError
from keys.providers.base import KeyProvider, MasterKeyInfo, WrappedKey

_KEK = AESGCM(bytes(range(100, 132)))


class SlowProvider(KeyProvider):
    name = "slow"
    delay = 0.0
    failing = False
    calls = 0
    running = 0
    most_at_once = 0
    _lock = threading.Lock()

    @classmethod
    def reset(cls, *, delay: float = 0.0, failing: bool = False) -> None:
        with cls._lock:
            cls.delay, cls.failing, cls.calls, cls.running, cls.most_at_once = delay, failing, 0, 0, 0

    @classmethod
    def from_settings(cls) -> SlowProvider:
        return cls()

    @property
    def current_key_id(self) -> str:
        return "slow-1"

    def create_key(self, *, label: str) -> str:
        raise ProviderError("not supported")

    def wrap_key(self, plaintext_key: bytes, *, context: bytes) -> WrappedKey:
        nonce = os.urandom(12)
        return WrappedKey(key_id="slow-1", blob=nonce + _KEK.encrypt(nonce, plaintext_key, context))

    def unwrap_key(self, blob: bytes, *, key_id: str, context: bytes) -> bytes:
        if key_id != "slow-1":  # the suite's own keys (the audit and identity MAC keys): the local master key
            from keys.providers.local import LocalKeyProvider

            return LocalKeyProvider.from_settings().unwrap_key(blob, key_id=key_id, context=context)
        cls = type(self)
        with cls._lock:
            cls.calls += 1
            cls.running += 1
            cls.most_at_once = max(cls.most_at_once, cls.running)
        try:
            time.sleep(cls.delay)
            if cls.failing:
                raise ProviderError("KMS unreachable (connect timeout)", permanent=False)
            return _KEK.decrypt(blob[:12], blob[12:], context)
        finally:
            with cls._lock:
                cls.running -= 1

    def list_keys(self) -> list[MasterKeyInfo]:
        return [MasterKeyInfo(key_id="slow-1", provider=self.name, current=True)]

    def schedule_key_deletion(self, key_id: str, *, pending_days: int) -> dt.datetime:
        raise ProviderError("not supported")
