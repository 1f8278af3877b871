"""Key rotation without downtime: data keys, the master key, retirement and destruction.

Guarantees:

* ``rotate_data_key`` makes a new active key and demotes the old one to ``decrypt_only`` in
  one transaction; every process writes under the new key within the key-cache TTL, and
  old values stay readable.
* ``rotate_master_key`` rewraps every data key under a new master key and touches no data
  row. It unwraps everything first: if the old master key is wrong or unavailable, nothing
  is changed.
* Rotations of one purpose are serialised (a PostgreSQL advisory lock per purpose, taken
  without waiting): a second concurrent rotation is refused with KeysError, never a raw
  IntegrityError, and never yields two active keys or a second new key.
* ``retire_data_key`` and ``destroy_data_key`` count the values still under a key (a scan of
  every encrypted column, as the system) rather than assuming; destroying a key in use
  needs an explicit ``crypto_shred=True`` and leaves those values unreadable by design.
* Both refuse until the key has been out of service longer than the key-cache TTL plus the
  longest transaction (``NEONPRO_KEY_MAX_TRANSACTION_SECONDS``): until then a process that
  cached the key may still commit values under it. Purposes whose values cannot be counted
  (file, session, audit, identity) are refused too, unless the caller says
  ``uncounted=True``. Destroying needs the key id restated (``confirm``); every refused
  destroy is audited.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.apps import apps
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from keys.conf import keys_settings
from keys.exceptions import KeysError
from keys.fields import INDEX_PREFIX_SIZE, EncryptedMixin, encrypted_fields
from keys.keyring import _unwrap, keyring
from keys.models import DataKey, SubjectKey
from keys.providers import reset_provider
from keys.providers.base import KeyProvider
from keys.signals import key_event


def _emit(
    action: str, datakey: DataKey | None = None, outcome: str = "success", purpose: str = "", **details: object
) -> None:
    key_event.send(
        __name__,
        action=action,
        outcome=outcome,
        key_id=datakey.pk if datakey else None,
        purpose=datakey.purpose if datakey else purpose,
        details=details,
    )


# Advisory-lock namespace of key rotations ("NPKR"); the second key is the purpose's index.
# Two-integer advisory locks never collide with the one-bigint locks used elsewhere.
ROTATE_LOCK = 0x4E50_4B52


class RefusedError(KeysError):
    """A lifecycle step refused, with a short ``code`` the audit log can record."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code


class RotationInProgressError(RefusedError):
    """Another rotation of the same purpose holds the lock: nothing was changed."""


def _lock_rotation(purpose: str) -> None:
    """Take the purpose's rotation lock for the current transaction, or refuse at once."""
    if connection.vendor != "postgresql":
        return  # SQLite (the embedded mode) lets one writer at a time into the whole database
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_try_advisory_xact_lock(%s::integer, %s::integer)",
            [ROTATE_LOCK, DataKey.Purpose.values.index(purpose)],
        )
        locked = bool(cursor.fetchone()[0])
    if not locked:
        raise RotationInProgressError(
            f"another rotation of the {purpose} key is in progress; nothing was changed. "
            "Check `keys status` when it has finished before rotating again",
            code="rotation_in_progress",
        )


def rotate_data_key(purpose: str, *, now: dt.datetime | None = None) -> DataKey:
    """Activate a new data key for ``purpose``; the previous one becomes decrypt-only.

    Raises KeysError for an unknown purpose, RotationInProgressError (a KeysError) when
    another rotation of the purpose is running or won the race, ProviderError when the
    master key cannot wrap. Refusals are audited (``key.rotate``, outcome ``denied``).
    """
    from keys.services import create_data_key

    if purpose not in DataKey.Purpose.values:
        raise KeysError(f"unknown key purpose {purpose!r}; expected one of {', '.join(DataKey.Purpose.values)}")
    now = now or timezone.now()
    try:
        with transaction.atomic():
            _lock_rotation(purpose)
            old = DataKey.objects.select_for_update().filter(purpose=purpose, status=DataKey.Status.ACTIVE).first()
            if old is not None:
                old.status = DataKey.Status.DECRYPT_ONLY
                old.deactivated_at = now
                old.save(update_fields=["status", "deactivated_at"])
            new = create_data_key(purpose)
            _emit("key.rotate", new, previous_key_id=old.pk if old else None)
    except RotationInProgressError as exc:
        _emit("key.rotate", None, outcome="denied", purpose=purpose, refused=exc.code)
        raise
    except IntegrityError:
        # Only without the lock (SQLite), or against a first-use key creation: one key won.
        _emit("key.rotate", None, outcome="denied", purpose=purpose, refused="concurrent_activation")
        raise RotationInProgressError(
            f"another process activated a {purpose} key at the same moment; nothing was changed. "
            "Check `keys status` before rotating again",
            code="concurrent_activation",
        ) from None
    keyring.clear()
    return new


@dataclass
class DueKey:
    purpose: str
    key_id: int
    reason: str


def keys_due_for_rotation(now: dt.datetime | None = None, *, purpose: str | None = None) -> list[DueKey]:
    """Active keys (of ``purpose``, or of every purpose) past their age or encryption-count limit."""
    now = now or timezone.now()
    due = []
    policy = keys_settings.ROTATION
    active = DataKey.objects.filter(status=DataKey.Status.ACTIVE)
    if purpose is not None:
        active = active.filter(purpose=purpose)
    for key in active:
        limits = policy.get(key.purpose, {})
        if key.age_days(now) >= limits.get("max_age_days", 1 << 30):
            due.append(DueKey(key.purpose, key.pk, f"{key.age_days(now)} days old"))
        elif key.encryption_count >= limits.get("max_encryptions", 1 << 62):
            due.append(DueKey(key.purpose, key.pk, f"{key.encryption_count} encryptions"))
    return due


def rotate_due_keys(now: dt.datetime | None = None, *, purpose: str | None = None) -> list[tuple[DueKey, DataKey]]:
    """Rotate every key (of ``purpose``, if given) that policy says is due (the daily beat task)."""
    return [(due, rotate_data_key(due.purpose, now=now)) for due in keys_due_for_rotation(now, purpose=purpose)]


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


# Purposes whose every value sits in an encrypted database column, so a scan counts them.
# File and session keys encrypt outside those columns; audit and identity keys sign.
COUNTED_PURPOSES = (DataKey.Purpose.FIELD, DataKey.Purpose.INDEX)


class UncountableUsageError(RefusedError):
    """The values under a key of this purpose cannot be counted."""


def usage_countable(purpose: str) -> bool:
    return purpose in COUNTED_PURPOSES


def count_key_usage(datakey: DataKey) -> dict[str, int]:
    """How many stored values still use ``datakey``, per ``app.Model.field`` (one scan per table).

    Runs in the configured system context: row-level security would otherwise hide rows.
    Raises UncountableUsageError for a purpose whose values are not in encrypted columns
    (anything but field and index): "none found" would be a guess, not a count.
    """
    if not usage_countable(datakey.purpose):
        raise UncountableUsageError(
            f"cannot count the values under data key {datakey.pk}: {datakey.purpose} keys protect data "
            "outside the encrypted columns (files, sessions, signatures), so no scan can say none is left",
            code="uncountable",
        )
    with keys_settings.SYSTEM_CONTEXT("count values under a data key"):
        return _count_usage(datakey)


def _key_id_offsets(datakey: DataKey, fields: list[EncryptedMixin]) -> list[tuple[EncryptedMixin, int]]:
    """(field, 1-based offset of the 4-byte key id in its values) for the fields that hold
    values of ``datakey``'s purpose: index keys prefix searchable values, field keys follow
    the envelope's version byte (after the blind index in searchable values)."""
    if datakey.purpose == DataKey.Purpose.INDEX:
        return [(field, 1) for field in fields if field.search]
    return [(field, (INDEX_PREFIX_SIZE if field.search else 0) + 2) for field in fields]


def _count_usage(datakey: DataKey) -> dict[str, int]:
    """One scan per table, counting every column at once (``count(*) FILTER``), each in a
    transaction of its own allowed the long statement timeout (a scan of millions of rows
    outlasts a request's). The key id sits at a fixed offset, but an index on it could not
    serve this count: row-level security evaluates its policy before any non-leakproof
    expression (``substr``), so the planner refuses such an index to the application role."""
    usage: dict[str, int] = {}
    key_bytes = datakey.pk.to_bytes(4, "big")
    for model in apps.get_models():
        counted = _key_id_offsets(datakey, encrypted_fields(model))
        if not counted:
            continue
        table = connection.ops.quote_name(model._meta.db_table)
        filters = ", ".join(
            f"count(*) FILTER (WHERE substr({connection.ops.quote_name(str(field.column))}, %s, 4) = %s)"
            for field, _ in counted
        )
        params: list[Any] = [value for _, offset in counted for value in (offset, key_bytes)]
        with transaction.atomic(), keys_settings.LONG_TRANSACTION(), connection.cursor() as cursor:
            cursor.execute(f"SELECT {filters} FROM {table}", params)  # noqa: S608 - quoted names
            counts = cursor.fetchone()
        for (field, _), count in zip(counted, counts, strict=True):
            if count:
                usage[f"{model._meta.label}.{field.name}"] = int(count)
    return usage


def quiet_period() -> dt.timedelta:
    """How long after leaving service a key may still gain values: the key-cache TTL (a
    process may hold it that long) plus the longest transaction (its values commit later)."""
    return dt.timedelta(seconds=keys_settings.CACHE_TTL + keys_settings.MAX_TRANSACTION_SECONDS)


def settled_at(datakey: DataKey) -> dt.datetime | None:
    """When no process can add a value under ``datakey`` any more; None if it never encrypted."""
    if datakey.status == DataKey.Status.ACTIVE:
        raise RefusedError(f"data key {datakey.pk} is active; rotate it first", code="active")
    left = datakey.deactivated_at or datakey.retired_at
    if left is None:
        if datakey.activated_at is None:
            return None  # created decrypt-only: nothing was ever encrypted under it
        raise RefusedError(
            f"data key {datakey.pk} has no record of when it left service (deactivated_at is empty), "
            "so no one can say when the last value under it was written",
            code="no_service_record",
        )
    return left + quiet_period()


def _require_settled(datakey: DataKey, action: str, now: dt.datetime) -> None:
    allowed = settled_at(datakey)
    if allowed is not None and now < allowed:
        wait = int((allowed - now).total_seconds()) + 1
        raise RefusedError(
            f"data key {datakey.pk} left service at {allowed - quiet_period():%Y-%m-%d %H:%M:%S} UTC; processes "
            f"may still write under it until the key cache (NEONPRO_KEY_CACHE_TTL={keys_settings.CACHE_TTL:g}s) "
            "and the longest transaction "
            f"(NEONPRO_KEY_MAX_TRANSACTION_SECONDS={keys_settings.MAX_TRANSACTION_SECONDS:g}s) have passed: "
            f"{action} is allowed from {allowed:%Y-%m-%d %H:%M:%S} UTC (in {wait} s); "
            "run `keys reencrypt` again first, then `keys usage`",
            code="quiet_period",
        )


def _usage(datakey: DataKey, uncounted: bool, action: str) -> dict[str, int]:
    if usage_countable(datakey.purpose):
        return count_key_usage(datakey)
    if not uncounted:
        raise UncountableUsageError(
            f"cannot count the values under data key {datakey.pk} ({datakey.purpose} keys protect data outside the "
            f"encrypted columns): refusing to {action} it. If you have checked by other means that nothing still "
            "needs it, pass --uncounted (recorded in the audit log)",
            code="uncountable",
        )
    return {}


def retire_data_key(datakey: DataKey, *, now: dt.datetime | None = None, uncounted: bool = False) -> DataKey:
    """Mark a decrypt-only key retired once no stored value uses it (counted, not assumed).

    Raises KeysError when the key is not decrypt-only, is still within its quiet period
    (the message says from when it is allowed), or protects values; UncountableUsageError
    for a purpose that cannot be counted unless ``uncounted``.
    """
    if datakey.status != DataKey.Status.DECRYPT_ONLY:
        raise KeysError(f"data key {datakey.pk} is {datakey.status}; only a decrypt-only key can be retired")
    now = now or timezone.now()
    _require_settled(datakey, "retiring it", now)
    usage = _usage(datakey, uncounted, "retire")
    if usage:
        total = sum(usage.values())
        raise KeysError(
            f"data key {datakey.pk} still protects {total} values ({_summary(usage)}); run `keys reencrypt` first"
        )
    datakey.status, datakey.retired_at = DataKey.Status.RETIRED, now
    datakey.save(update_fields=["status", "retired_at"])
    keyring.clear()
    _emit("key.retire", datakey, uncounted=not usage_countable(datakey.purpose))
    return datakey


@dataclass
class DestroyPlan:
    """What ``keys destroy`` would do: the values it would make unreadable, or why it refuses."""

    key_id: int
    purpose: str
    status: str
    usage: dict[str, int]
    counted: bool
    refusal: str | None
    refusal_code: str = ""

    @property
    def values(self) -> int:
        return sum(self.usage.values())


def plan_destroy(
    datakey: DataKey, *, crypto_shred: bool = False, uncounted: bool = False, now: dt.datetime | None = None
) -> DestroyPlan:
    """Everything ``destroy_data_key`` checks, without changing anything (``--dry-run``)."""
    counted = usage_countable(datakey.purpose)
    usage: dict[str, int] = {}
    try:
        if datakey.status == DataKey.Status.DESTROYED:
            raise RefusedError(f"data key {datakey.pk} is already destroyed", code="destroyed")
        _require_settled(datakey, "destroying it", now or timezone.now())
        usage = _usage(datakey, uncounted, "destroy")
        if usage and not crypto_shred:
            raise RefusedError(
                f"data key {datakey.pk} still protects {sum(usage.values())} values ({_summary(usage)}); "
                "re-encrypt them first, or pass --crypto-shred to make them unreadable on purpose",
                code="in_use",
            )
    except RefusedError as exc:
        return DestroyPlan(datakey.pk, datakey.purpose, datakey.status, usage, counted, str(exc), exc.code)
    return DestroyPlan(datakey.pk, datakey.purpose, datakey.status, usage, counted, None)


def refuse_destroy(datakey: DataKey, reason: str, code: str, **details: Any) -> RefusedError:
    """Audit a refused destroy (outcome ``denied``, ``refused=code``) and return the error to raise."""
    _emit("key.destroy", datakey, outcome="denied", refused=code, **details)
    return RefusedError(reason, code=code)


def destroy_data_key(
    datakey: DataKey,
    *,
    confirm: int | None,
    crypto_shred: bool = False,
    uncounted: bool = False,
    now: dt.datetime | None = None,
) -> dict[str, int]:
    """Erase a data key's wrapped material. Irreversible: ``confirm`` must restate its id.

    Refuses (KeysError, audited as ``key.destroy`` denied) unless the key is decrypt-only or
    retired, past its quiet period, countable or ``uncounted``, and unused or ``crypto_shred``.
    Returns the usage found (values that are now unreadable when crypto-shredding).
    """
    flags: dict[str, Any] = {"crypto_shred": crypto_shred, "uncounted": uncounted}
    if confirm != datakey.pk:
        raise refuse_destroy(
            datakey,
            f"destroying data key {datakey.pk} is irreversible: confirm by restating its id "
            f"(--confirm {datakey.pk}; got {confirm})",
            "not_confirmed",
            **flags,
        )
    plan = plan_destroy(datakey, crypto_shred=crypto_shred, uncounted=uncounted, now=now)
    if plan.refusal is not None:
        raise refuse_destroy(datakey, plan.refusal, plan.refusal_code, **flags)
    datakey.status, datakey.destroyed_at, datakey.wrapped_key = DataKey.Status.DESTROYED, now or timezone.now(), b""
    datakey.save(update_fields=["status", "destroyed_at", "wrapped_key"])
    keyring.clear()
    _emit("key.destroy", datakey, values_shredded=plan.values, counted=plan.counted, **flags)
    return plan.usage


def _summary(usage: dict[str, int]) -> str:
    return ", ".join(f"{name}: {count}" for name, count in sorted(usage.items()))
