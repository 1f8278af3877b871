"""Key providers: where the master key (KEK) lives and how data keys are wrapped.

Every provider subclasses :class:`keys.providers.base.KeyProvider`. The configured one is
resolved lazily from ``NEONPRO_KEY_PROVIDER`` (an alias or a dotted path) and cached until
the setting changes.
"""

from __future__ import annotations

import threading

from django.utils.module_loading import import_string

from keys.conf import keys_settings
from keys.exceptions import ProviderError
from keys.providers.base import KeyProvider

_lock = threading.Lock()
_provider: KeyProvider | None = None


def get_provider() -> KeyProvider:
    """Return the configured provider (built on first use, then cached)."""
    global _provider
    provider = _provider
    if provider is not None:
        return provider
    with _lock:
        if _provider is None:
            path = keys_settings.PROVIDER
            try:
                cls = import_string(path)
            except ImportError as exc:
                raise ProviderError(f"NEONPRO_KEY_PROVIDER {path!r} cannot be imported: {exc}") from None
            if not (isinstance(cls, type) and issubclass(cls, KeyProvider)):
                raise ProviderError(f"NEONPRO_KEY_PROVIDER {path!r} is not a KeyProvider subclass")
            _provider = cls.from_settings()
        return _provider


def reset_provider() -> None:
    """Forget the cached provider (settings changed, or tests)."""
    global _provider
    with _lock:
        _provider = None
