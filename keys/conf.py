"""Lazy accessors for the ``keys`` settings.

Settings are read at call time, never at import time, so ``override_settings`` and live
configuration changes take effect without re-importing anything.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

from django.conf import settings
from django.utils.module_loading import import_string

PURPOSES = ("field", "index", "file", "session", "audit", "identity")

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
        from keys.secret import reveal

        return reveal(getattr(settings, "NEONPRO_MASTER_KEY", None))

    @property
    def MASTER_KEY_FILE(self) -> Path:  # noqa: N802
        """Path of the local master-key file (0600, base64 of 32 random bytes)."""
        value = getattr(settings, "NEONPRO_MASTER_KEY_FILE", None)
        if value:
            return Path(value)
        return Path(getattr(settings, "NEONPRO_DATA_DIR", "var")) / "master.key"

    @property
    def PROVIDER_FALLBACKS(self) -> list[str]:  # noqa: N802
        """Providers consulted (after the current one) to unwrap keys wrapped by them — the
        previous provider while a master-key rotation to another provider rolls out."""
        names = getattr(settings, "NEONPRO_KEY_PROVIDER_FALLBACKS", []) or []
        return [PROVIDER_ALIASES.get(name, name) for name in names]

    @property
    def MASTER_KEY_PREVIOUS(self) -> list[str]:  # noqa: N802
        """Base64 of older local master keys, still used to unwrap (during a rotation)."""
        return list(getattr(settings, "NEONPRO_MASTER_KEY_PREVIOUS", []) or [])

    @property
    def MASTER_KEY_PREVIOUS_FILES(self) -> list[Path]:  # noqa: N802
        """Files of older local master keys, still used to unwrap (during a rotation)."""
        return [Path(p) for p in getattr(settings, "NEONPRO_MASTER_KEY_PREVIOUS_FILES", []) or []]

    @property
    def ROTATION(self) -> dict[str, dict[str, int]]:  # noqa: N802
        """Per purpose: rotate after ``max_age_days`` or ``max_encryptions``, whichever first."""
        defaults = {
            "field": {"max_age_days": 90, "max_encryptions": 2**30},
            "index": {"max_age_days": 365, "max_encryptions": 2**62},
            "file": {"max_age_days": 90, "max_encryptions": 2**30},
            "session": {"max_age_days": 30, "max_encryptions": 2**30},
            # MAC keys: old ones keep verifying what they signed, so rotating is cheap.
            "audit": {"max_age_days": 365, "max_encryptions": 2**62},
            "identity": {"max_age_days": 90, "max_encryptions": 2**62},
        }
        configured = getattr(settings, "NEONPRO_KEY_ROTATION", {}) or {}
        return {purpose: {**policy, **configured.get(purpose, {})} for purpose, policy in defaults.items()}

    @property
    def COUNT_BLOCK(self) -> int:  # noqa: N802
        """Encryptions a process reserves at a time (one UPDATE per block)."""
        block = int(getattr(settings, "NEONPRO_KEY_COUNT_BLOCK", 10_000))
        if block < 1:
            from keys.exceptions import KeysError

            raise KeysError(f"NEONPRO_KEY_COUNT_BLOCK must be at least 1, not {block}")
        return block

    @property
    def MAX_TRANSACTION_SECONDS(self) -> float:  # noqa: N802
        """The longest a transaction that encrypts may stay open, in seconds (default 600).

        A value sealed under a key just before a rotation reaches the database only when its
        transaction commits, so ``keys retire`` and ``keys destroy`` wait for the key-cache
        TTL plus this long after the key left service. Enforce the bound in PostgreSQL for
        the application role (``transaction_timeout`` on PostgreSQL 17+, otherwise
        ``statement_timeout`` and ``idle_in_transaction_session_timeout``), see docs/keys.md.
        """
        seconds = float(getattr(settings, "NEONPRO_KEY_MAX_TRANSACTION_SECONDS", 600))
        if seconds < 0:
            from keys.exceptions import KeysError

            raise KeysError(f"NEONPRO_KEY_MAX_TRANSACTION_SECONDS cannot be negative, not {seconds:g}")
        return seconds

    @property
    def COUNTER_DB_ALIAS(self) -> str:  # noqa: N802
        """Connection that commits encryption-count reservations on its own."""
        return "keys" if "keys" in settings.DATABASES else "default"

    @property
    def SYSTEM_CONTEXT(self) -> Callable[[str], AbstractContextManager[Any]]:  # noqa: N802
        """Context manager (called with a reason) that gives maintenance jobs full visibility.

        ``keys`` depends on nothing else in NeonPro, so the project names its own (row-level
        security identity) in NEONPRO_KEYS_SYSTEM_CONTEXT; without one, nothing is wrapped.
        """
        path = getattr(settings, "NEONPRO_KEYS_SYSTEM_CONTEXT", "")
        if not path:
            return lambda reason: nullcontext()
        return import_string(path)  # type: ignore[no-any-return]

    @property
    def LONG_TRANSACTION(self) -> Callable[[], AbstractContextManager[Any]]:  # noqa: N802
        """Context manager entered inside each of a maintenance job's transactions (the
        re-encryption batches) that lifts the request-sized statement timeout for it. The
        project names its own in NEONPRO_KEYS_LONG_TRANSACTION; without one, nothing is lifted."""
        path = getattr(settings, "NEONPRO_KEYS_LONG_TRANSACTION", "")
        if not path:
            return nullcontext
        return import_string(path)  # type: ignore[no-any-return]

    @property
    def OPERATOR_CONTEXT(self) -> Callable[[dict[str, Any]], AbstractContextManager[Any]]:  # noqa: N802
        """Context manager (called with a command's options) naming who runs a ``keys`` command
        in the events it records (``--operator``/``--reason``/``--ticket``); nothing by default."""
        path = getattr(settings, "NEONPRO_KEYS_OPERATOR_CONTEXT", "")
        if not path:
            return lambda options: nullcontext()
        return import_string(path)  # type: ignore[no-any-return]

    @property
    def CACHE_TTL(self) -> float:  # noqa: N802
        """Seconds an unwrapped data key stays cached in process memory."""
        return float(getattr(settings, "NEONPRO_KEY_CACHE_TTL", 300))

    @property
    def LEGACY_ROWS_READABLE(self) -> bool:  # noqa: N802
        """Whether sealed models (keys.integrity) still read rows written before row seals
        (version 0). Turn off once ``keys reencrypt`` has upgraded every row."""
        return bool(getattr(settings, "NEONPRO_LEGACY_ROWS_READABLE", True))

    @property
    def PROVIDER_DEADLINE(self) -> float:  # noqa: N802
        """Seconds a request waits for the key provider (KMS/HSM) before failing (keys.flight)."""
        return _positive("NEONPRO_KEY_PROVIDER_DEADLINE", 5.0)

    @property
    def PROVIDER_FAILURE_TTL(self) -> float:  # noqa: N802
        """Seconds a failed provider call is remembered, so callers fail at once (0: never)."""
        return _positive("NEONPRO_KEY_PROVIDER_FAILURE_TTL", 5.0, allow_zero=True)

    @property
    def SUBJECT_KEY_DIR(self) -> Path:  # noqa: N802
        """Directory of the subject-epoch key files (shared by every process; see docs/keys.md)."""
        value = getattr(settings, "NEONPRO_SUBJECT_KEY_DIR", None)
        if value:
            return Path(value)
        return Path(getattr(settings, "NEONPRO_DATA_DIR", "var")) / "subject-keys"

    @property
    def SUBJECT_EPOCH_DAYS(self) -> float:  # noqa: N802
        """Days a subject epoch wraps new and rewrapped subject keys before the next one."""
        return _positive("NEONPRO_SUBJECT_EPOCH_DAYS", 7.0)

    @property
    def SUBJECT_EPOCH_KEEP_DAYS(self) -> float:  # noqa: N802
        """Days a retired epoch is kept before its key file is destroyed: how old a database
        backup may be and still open its subject-key data (0: destroyed at once)."""
        return _positive("NEONPRO_SUBJECT_EPOCH_KEEP_DAYS", 21.0, allow_zero=True)

    @property
    def SUBJECT_ERASER(self) -> Callable[..., dict[str, int]] | None:  # noqa: N802
        """Dotted path of ``erase(subject, *, dry_run) -> counts`` erasing a subject's structured
        records when it is shredded (the project names patients.erasure.erase_patient_records)."""
        path = getattr(settings, "NEONPRO_KEYS_SUBJECT_ERASER", "")
        return import_string(path) if path else None


def _positive(name: str, default: float, *, allow_zero: bool = False) -> float:
    value = float(getattr(settings, name, default))
    if value < 0 or (value == 0 and not allow_zero):
        from keys.exceptions import KeysError

        raise KeysError(f"{name} must be {'at least 0' if allow_zero else 'more than 0'} seconds, not {value:g}")
    return value


keys_settings = KeysSettings()
