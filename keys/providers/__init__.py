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
            _provider = build_provider(keys_settings.PROVIDER)
        return _provider


_fallbacks: list[KeyProvider] | None = None


def build_provider(path: str) -> KeyProvider:
    """A provider from an alias or dotted path, built from settings now (not cached)."""
    from keys.conf import PROVIDER_ALIASES

    path = PROVIDER_ALIASES.get(path, path)
    try:
        cls = import_string(path)
    except ImportError as exc:
        raise ProviderError(f"key provider {path!r} cannot be imported: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, KeyProvider)):
        raise ProviderError(f"{path!r} is not a KeyProvider subclass")
    return cls.from_settings()


def fallback_providers() -> list[KeyProvider]:
    global _fallbacks
    if _fallbacks is None:
        with _lock:
            if _fallbacks is None:
                _fallbacks = [build_provider(path) for path in keys_settings.PROVIDER_FALLBACKS]
    return _fallbacks


def provider_for(key_id: str) -> KeyProvider:
    """The provider holding master key ``key_id`` (the current one first, then fallbacks);
    the current provider when none does, so its MasterKeyError explains the mismatch."""
    current = get_provider()
    if current.holds(key_id):
        return current
    for provider in fallback_providers():
        if provider.holds(key_id):
            return provider
    return current


def reset_provider() -> None:
    """Forget the cached providers (settings changed, or tests)."""
    global _provider, _fallbacks
    with _lock:
        _provider = None
        _fallbacks = None
