"""Use cases of the key inventory: create, initialise, list and verify data keys.

Every function documents what it raises; none returns or logs key material.
"""

from __future__ import annotations

import datetime as dt
import hmac
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from django.db import transaction
from django.utils import timezone

from keys import crypto
from keys.conf import keys_settings
from keys.exceptions import KeysError, MasterKeyError
from keys.keyring import _unwrap, keyring
from keys.models import DataKey
from keys.providers import get_provider, reset_provider
from keys.providers.base import KeyProvider
from keys.providers.local import generate_master_key, write_key_file
from keys.signals import key_event

logger = logging.getLogger(__name__)


def create_data_key(purpose: str, *, activate: bool = True) -> DataKey:
    """Create a random 256-bit data key, stored only wrapped by the current master key.

    Raises IntegrityError when ``activate`` and the purpose already has an active key,
    ProviderError when the master key cannot wrap.
    """
    provider = get_provider()
    now = timezone.now()
    status = DataKey.Status.ACTIVE if activate else DataKey.Status.DECRYPT_ONLY
    with transaction.atomic():
        datakey = DataKey.objects.create(
            purpose=purpose,
            algorithm=DataKey.ALGORITHMS[DataKey.Purpose(purpose)],
            status=status,
            wrapped_key=b"",
            wrapping_key_id=provider.current_key_id,
            provider=provider.name,
            activated_at=now if activate else None,
        )
        secret = bytearray(os.urandom(32))
        try:
            wrapped = provider.wrap_key(bytes(secret), context=datakey.wrap_context())
        finally:
            secret[:] = bytes(32)
        check_master_key_identity(provider, wrapped.key_id)  # a replaced HSM key wraps nothing new
        datakey.wrapped_key = wrapped.blob
        datakey.wrapping_key_id = wrapped.key_id
        datakey.save(update_fields=["wrapped_key", "wrapping_key_id"])
        key_event.send(__name__, action="key.create", outcome="success", key_id=datakey.pk, purpose=purpose, details={})
    return datakey


def init_keys() -> list[DataKey]:
    """Make sure every purpose has an active data key; return the keys created."""
    created = []
    for purpose in DataKey.Purpose.values:
        if not DataKey.objects.active(purpose).exists():
            created.append(create_data_key(purpose))
    keyring.clear()
    return created


def create_master_key_file(path: Path | None = None) -> Path:
    """Write a new local master key to ``path`` (default: the configured key file), 0600.

    Raises KeysError when the file already exists (it is never overwritten).
    """
    target = path or keys_settings.MASTER_KEY_FILE
    if target.exists():
        raise KeysError(f"{target} already exists; refusing to overwrite a master key")
    write_key_file(target, generate_master_key())
    reset_provider()
    keyring.clear()
    # Not an audit event: a new installation has no database yet when its master key is made.
    logger.warning("new local master key written to %s", target)
    return target


def check_master_key_identity(provider: KeyProvider, key_id: str, *, using: str | None = None) -> None:
    """Compare master key ``key_id`` with the check value recorded at its first use; record it
    now when there is none. Providers whose key ids identify the key material exactly (local,
    AWS KMS) have no check value and pass. Raises MasterKeyError for a replaced key.
    """
    from keys.models import MasterKeyCheck

    value = provider.check_value(key_id)
    if value is None:
        return
    rows = MasterKeyCheck.objects.using(using) if using else MasterKeyCheck.objects
    record = rows.filter(key_id=key_id).first()
    if record is None:
        rows.get_or_create(key_id=key_id, defaults={"check_value": value})
        return
    if not hmac.compare_digest(record.check_value, value):
        raise MasterKeyError(
            replaced_key_message(
                key_id,
                f"its check value is {value}, not {record.check_value} as recorded on {record.recorded_at:%Y-%m-%d}",
            )
        )


def replaced_key_message(key_id: str, evidence: str) -> str:
    return (
        f"master key {key_id} is not the key that wrapped the stored data keys ({evidence}): it was replaced, for "
        "instance deleted and another created under the same label. Restore the original key from the HSM's "
        "backup; a key created anew can never unwrap them. Never create a key under a label already used."
    )


def require_configured_master_key(key_id: str) -> None:
    """Refuse a master-key rotation towards ``key_id`` unless this process's own configuration
    already holds it (as the current key, a previous key, or through a fallback provider).

    Every process must be able to unwrap under the new key *before* data keys are rewrapped
    under it; a configuration that cannot is the one the other processes still run with, and
    rewrapping would take them all offline. Raises KeysError.
    """
    from keys.providers import fallback_providers

    configured = [get_provider(), *fallback_providers()]
    if any(provider.holds(key_id) for provider in configured):
        return
    held = ", ".join(sorted({info.key_id for provider in configured for info in provider.list_keys()}))
    raise KeysError(
        f"refusing to rewrap under master key {key_id}: this process's configuration does not hold it (it holds "
        f"{held}). First configure every process with the new key as current and the old one as previous "
        "(NEONPRO_MASTER_KEY_FILE + NEONPRO_MASTER_KEY_PREVIOUS_FILES, or NEONPRO_KEY_PROVIDER + "
        "NEONPRO_KEY_PROVIDER_FALLBACKS) and restart them, then run rotate-master from that configuration "
        "(docs/keys.md)."
    )


@dataclass
class KeyRow:
    id: int
    purpose: str
    status: str
    algorithm: str
    wrapping_key_id: str
    created_at: dt.datetime
    age_days: int
    encryption_count: int


def key_inventory(now: dt.datetime | None = None) -> list[KeyRow]:
    now = now or timezone.now()
    return [
        KeyRow(
            id=k.pk,
            purpose=k.purpose,
            status=k.status,
            algorithm=k.algorithm,
            wrapping_key_id=k.wrapping_key_id,
            created_at=k.created_at,
            age_days=k.age_days(now),
            encryption_count=k.encryption_count,
        )
        for k in DataKey.objects.order_by("purpose", "-id")
    ]


@dataclass
class VerifyReport:
    checked: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


def verify_keys() -> VerifyReport:
    """Unwrap every non-destroyed data key and round-trip a value per purpose.

    Never raises for a key failure: each one is a line in ``report.failures``.
    """
    report = _verify()
    try:
        key_event.send(
            __name__,
            action="key.verify",
            outcome="success" if report.ok else "error",
            key_id=None,
            purpose="",
            details={"checked": len(report.checked), "failures": len(report.failures)},
        )
    except Exception as exc:  # the audit log is keyed: a key failure may leave it unwritable
        if report.ok:
            raise
        # The failures found are what the operator needs; that they could not be audited is one more.
        report.failures.append(f"the verification could not be audited ({type(exc).__name__})")
    return report


def _verify() -> VerifyReport:
    report = VerifyReport()
    try:
        provider = get_provider()
        provider.health()
    except KeysError as exc:
        report.failures.append(f"master key provider: {exc}")
        return report
    keyring.clear()
    for datakey in DataKey.objects.usable().order_by("id"):
        try:
            _unwrap(datakey)
            report.checked.append(f"data key {datakey.pk} ({datakey.purpose}, {datakey.status}): unwraps")
        except KeysError as exc:
            report.failures.append(str(exc))
    if report.failures:
        return report
    for purpose in DataKey.Purpose.values:
        if not DataKey.objects.active(purpose).exists():
            report.checked.append(f"{purpose}: no active key yet (created on first use)")
            continue
        try:
            _round_trip(purpose)
            report.checked.append(f"{purpose}: round trip ok")
        except KeysError as exc:
            report.failures.append(f"{purpose}: round trip failed: {exc}")
    return report


def _round_trip(purpose: str) -> None:
    probe = os.urandom(24)
    context = b"neonpro.keys.verify\x00" + purpose.encode()
    if purpose == DataKey.Purpose.INDEX:
        token = crypto.blind_index(probe.hex(), context=context)
        if token != crypto.blind_index(probe.hex(), context=context):
            raise KeysError("blind index is not deterministic")
        return
    if purpose in DataKey.MAC_PURPOSES:
        key_id, tag = crypto.sign(probe, purpose=purpose, label=context)
        if not crypto.verify_signature(probe, tag, purpose=purpose, label=context, key_id=key_id):
            raise KeysError("a signature does not verify")
        return
    token = crypto.encrypt(probe, context=context, purpose=purpose)
    if crypto.decrypt(token, context=context) != probe:
        raise KeysError("decrypted value differs from the original")
