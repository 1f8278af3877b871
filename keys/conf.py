"""Lazy accessors for the ``keys`` settings.

Settings are read at call time, never at import time, so ``override_settings`` and live
configuration changes take effect without re-importing anything.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

PURPOSES = ("field", "index", "file", "session")

PROVIDER_ALIASES = {
    "local": "keys.providers.local.LocalKeyProvider",
    "pkcs11": "keys.providers.pkcs11.Pkcs11KeyProvider",
    "aws-kms": "keys.providers.aws_kms.AwsKmsKeyProvider",
}


class KeysSettings:
    # Property names mirror the setting names they read (allauth/DRF convention).
    @property
    def PROVIDER(self) -> str:  # noqa: N802
        """Dotted path of the key provider class, or an alias such as ``local``."""
        name = getattr(settings, "NEONPRO_KEY_PROVIDER", "local") or "local"
        return PROVIDER_ALIASES.get(name, name)

    @property
    def MASTER_KEY(self) -> str | None:  # noqa: N802
        """Base64 of the 32-byte local master key (takes precedence over the key file)."""
        return getattr(settings, "NEONPRO_MASTER_KEY", None) or None

    @property
    def MASTER_KEY_FILE(self) -> Path:  # noqa: N802
        """Path of the local master-key file (0600, base64 of 32 random bytes)."""
        value = getattr(settings, "NEONPRO_MASTER_KEY_FILE", None)
        if value:
            return Path(value)
        return Path(getattr(settings, "NEONPRO_DATA_DIR", "var")) / "master.key"

    @property
    def CACHE_TTL(self) -> float:  # noqa: N802
        """Seconds an unwrapped data key stays cached in process memory."""
        return float(getattr(settings, "NEONPRO_KEY_CACHE_TTL", 300))


keys_settings = KeysSettings()
