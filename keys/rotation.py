"""Key rotation without downtime: data keys, the master key, retirement and destruction.

Guarantees:

* ``rotate_data_key`` makes a new active key and demotes the old one to ``decrypt_only`` in
  one transaction; every process writes under the new key within the key-cache TTL, and
  old values stay readable.
* ``rotate_master_key`` rewraps every data key under a new master key and touches no data
  row. It unwraps everything first: if the old master key is wrong or unavailable, nothing
  is changed.
* ``retire_data_key`` and ``destroy_data_key`` count the values still under a key (a scan of
  every encrypted column, as the system) rather than assuming; destroying a key in use
  needs an explicit ``crypto_shred=True`` and leaves those values unreadable by design.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.apps import apps
from django.db import connection, transaction
from django.utils import timezone

from keys.conf import keys_settings
from keys.exceptions import KeysError
from keys.fields import INDEX_PREFIX_SIZE, encrypted_fields
from keys.keyring import _unwrap, keyring
from keys.models import DataKey, SubjectKey
from keys.providers import reset_provider
from keys.providers.base import KeyProvider
from keys.signals import key_event


def _emit(action: str, datakey: DataKey | None = None, outcome: str = "success", **details: object) -> None:
    key_event.send(
        __name__,
        action=action,
        outcome=outcome,
        key_id=datakey.pk if datakey else None,
        purpose=datakey.purpose if datakey else "",
        details=details,
    )


def rotate_data_key(purpose: str, *, now: dt.datetime | None = None) -> DataKey:
    """Activate a new data key for ``purpose``; the previous one becomes decrypt-only.

    Raises KeysError for an unknown purpose, ProviderError when the master key cannot wrap.
    """
    from keys.services import create_data_key

    if purpose not in DataKey.Purpose.values:
        raise KeysError(f"unknown key purpose {purpose!r}; expected one of {', '.join(DataKey.Purpose.values)}")
    now = now or timezone.now()
    with transaction.atomic():
        old = DataKey.objects.select_for_update().filter(purpose=purpose, status=DataKey.Status.ACTIVE).first()
        if old is not None:
            old.status = DataKey.Status.DECRYPT_ONLY
            old.deactivated_at = now
            old.save(update_fields=["status", "deactivated_at"])
        new = create_data_key(purpose)
        _emit("key.rotate", new, previous_key_id=old.pk if old else None)
    keyring.clear()
    return new


@dataclass
class DueKey:
    purpose: str
    key_id: int
    reason: str


def keys_due_for_rotation(now: dt.datetime | None = None) -> list[DueKey]:
    """Active keys past their purpose's age or encryption-count limit."""
    now = now or timezone.now()
    due = []
    policy = keys_settings.ROTATION
    for key in DataKey.objects.filter(status=DataKey.Status.ACTIVE):
        limits = policy.get(key.purpose, {})
        if key.age_days(now) >= limits.get("max_age_days", 1 << 30):
            due.append(DueKey(key.purpose, key.pk, f"{key.age_days(now)} days old"))
        elif key.encryption_count >= limits.get("max_encryptions", 1 << 62):
            due.append(DueKey(key.purpose, key.pk, f"{key.encryption_count} encryptions"))
    return due


def rotate_due_keys(now: dt.datetime | None = None) -> list[tuple[DueKey, DataKey]]:
    """Rotate every key that policy says is due (what the daily beat task runs)."""
    return [(due, rotate_data_key(due.purpose, now=now)) for due in keys_due_for_rotation(now)]


def rotate_master_key(new_provider: KeyProvider) -> int:
    """Rewrap every usable data key (and subject key) under ``new_provider``'s current master key.

    Returns how many keys were rewrapped. Touches no data rows. All unwraps happen before
    any write, so a wrong or unavailable old master key changes nothing.
    """
    datakeys = list(DataKey.objects.usable().exclude(wrapped_key=b"").order_by("id"))
    # Subject keys in an epoch are wrapped by its key file, rewrapped below; only older ones by the master key.
    subjects = list(SubjectKey.objects.filter(shredded_at__isnull=True, epoch__isnull=True))
    plain: dict[tuple[str, object], bytes] = {("d", k.pk): _unwrap(k) for k in datakeys}
    plain.update({("s", k.pk): _unwrap_subject(k) for k in subjects})
    try:
        with transaction.atomic():
            for key in datakeys:
                wrapped = new_provider.wrap_key(plain[("d", key.pk)], context=key.wrap_context())
                key.wrapped_key, key.wrapping_key_id, key.provider = wrapped.blob, wrapped.key_id, new_provider.name
                key.save(update_fields=["wrapped_key", "wrapping_key_id", "provider"])
            for subject in subjects:
                wrapped = new_provider.wrap_key(plain[("s", subject.pk)], context=subject.wrap_context())
                subject.wrapped_key, subject.wrapping_key_id = wrapped.blob, wrapped.key_id
                subject.provider = new_provider.name
                subject.save(update_fields=["wrapped_key", "wrapping_key_id", "provider"])
            _emit("master_key.rotate", None, rewrapped=len(datakeys) + len(subjects))
    finally:
        plain.clear()
    from keys.subjects import rewrap_epoch_files

    rewrap_epoch_files(new_provider)
    reset_provider()
    keyring.clear()
    return len(datakeys) + len(subjects)


def _unwrap_subject(subject: SubjectKey) -> bytes:
    from keys.providers import provider_for

    return provider_for(subject.wrapping_key_id).unwrap_key(
        bytes(subject.wrapped_key), key_id=subject.wrapping_key_id, context=subject.wrap_context()
    )


def count_key_usage(datakey: DataKey) -> dict[str, int]:
    """How many stored values still use ``datakey``, per ``app.Model.field`` (a full scan).

    Runs in the configured system context: row-level security would otherwise hide rows.
    """
    with keys_settings.SYSTEM_CONTEXT("count values under a data key"):
        return _count_usage(datakey)


def _count_usage(datakey: DataKey) -> dict[str, int]:
    usage: dict[str, int] = {}
    key_bytes = datakey.pk.to_bytes(4, "big")
    for model in apps.get_models():
        for field in encrypted_fields(model):
            if datakey.purpose == DataKey.Purpose.INDEX:
                if not field.search:
                    continue
                start = 1
            elif datakey.purpose == DataKey.Purpose.FIELD:
                start = (INDEX_PREFIX_SIZE if field.search else 0) + 2
            else:
                continue
            table = connection.ops.quote_name(model._meta.db_table)
            column = connection.ops.quote_name(str(field.column))
            with connection.cursor() as cursor:
                cursor.execute(
                    f"SELECT count(*) FROM {table} WHERE substr({column}, %s, 4) = %s",  # noqa: S608 - quoted names
                    [start, key_bytes],
                )
                count = int(cursor.fetchone()[0])
            if count:
                usage[f"{model._meta.label}.{field.name}"] = count
    return usage


def retire_data_key(datakey: DataKey, *, now: dt.datetime | None = None) -> DataKey:
    """Mark a decrypt-only key retired once no stored value uses it (counted, not assumed)."""
    if datakey.status != DataKey.Status.DECRYPT_ONLY:
        raise KeysError(f"data key {datakey.pk} is {datakey.status}; only a decrypt-only key can be retired")
    usage = count_key_usage(datakey)
    if usage:
        total = sum(usage.values())
        raise KeysError(
            f"data key {datakey.pk} still protects {total} values ({_summary(usage)}); run `keys reencrypt` first"
        )
    datakey.status, datakey.retired_at = DataKey.Status.RETIRED, now or timezone.now()
    datakey.save(update_fields=["status", "retired_at"])
    keyring.clear()
    _emit("key.retire", datakey)
    return datakey


def destroy_data_key(datakey: DataKey, *, crypto_shred: bool = False, now: dt.datetime | None = None) -> dict[str, int]:
    """Erase a data key's wrapped material. Refuses while values use it, unless ``crypto_shred``.

    Returns the usage found (values that are now unreadable when crypto-shredding).
    """
    if datakey.status == DataKey.Status.ACTIVE:
        raise KeysError(f"data key {datakey.pk} is active; rotate it first")
    if datakey.status == DataKey.Status.DESTROYED:
        raise KeysError(f"data key {datakey.pk} is already destroyed")
    usage = count_key_usage(datakey)
    if usage and not crypto_shred:
        raise KeysError(
            f"data key {datakey.pk} still protects {sum(usage.values())} values ({_summary(usage)}); "
            "re-encrypt them first, or pass --crypto-shred to make them unreadable on purpose"
        )
    datakey.status, datakey.destroyed_at, datakey.wrapped_key = DataKey.Status.DESTROYED, now or timezone.now(), b""
    datakey.save(update_fields=["status", "destroyed_at", "wrapped_key"])
    keyring.clear()
    _emit("key.destroy", datakey, crypto_shred=crypto_shred, values_shredded=sum(usage.values()))
    return usage


def _summary(usage: dict[str, int]) -> str:
    return ", ".join(f"{name}: {count}" for name, count in sorted(usage.items()))
