"""Per-subject (per-patient) keys, for files and documents — and crypto-shredding.

Guarantees: each subject gets its own random 256-bit key (not derived from a shared secret,
which could not be erased on its own). Values are envelope-v1-shaped with key id 0 ("the
subject's key") and the subject's UUID plus the caller's context in the associated data, so a
blob moved to another subject fails.

Subject keys are wrapped by a **subject epoch** key (:class:`keys.models.SubjectEpoch`), not
by the master key. An epoch key is held outside the database, in a 0600 file in
NEONPRO_SUBJECT_KEY_DIR, itself wrapped by the master key (so the file alone opens nothing).
:func:`rotate_subject_epoch` (daily, Celery beat) starts a new epoch every
NEONPRO_SUBJECT_EPOCH_DAYS, rewraps every live subject key under it, and destroys each retired
epoch's file NEONPRO_SUBJECT_EPOCH_KEEP_DAYS after it retired.

What shredding covers, exactly (:func:`shred_subject`): at once, the subject key leaves the
live database, so no process can read anything encrypted under it. Copies of the wrapped key
in dead row versions, WAL, replicas and database backups stay unwrappable while the epoch
that wrapped them exists: shredding is final when that epoch's file is destroyed, at most
EPOCH_DAYS + KEEP_DAYS (+ a day for the daily job) after the shred. It is not final against a
copy of the epoch-key directory kept longer than that (keep it out of file backups, or keep
those no longer than KEEP_DAYS), nor, for keys made before epochs existed, until the first
rotation rewraps them and the master key that wrapped them is destroyed. Values encrypted
under the shared field keys (structured records) are not covered: :func:`shred_patient` erases
them, and their old ciphertexts in backups stay readable until those field keys are destroyed.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import stat
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from keys import envelope
from keys.conf import keys_settings
from keys.exceptions import AuthenticationError, DecryptionError, KeysError, UnknownKeyError
from keys.models import SubjectEpoch, SubjectKey
from keys.providers import get_provider, provider_for
from keys.providers.base import KeyProvider
from keys.signals import key_event

_HEADER = bytes([envelope.VERSION]) + bytes(4)  # key id 0: "this subject's key"
_EPOCH_PROVIDER = "subject-epoch"
_NONCE = 12


def _context(subject: uuid.UUID, context: bytes) -> bytes:
    return b"neonpro.subject.v1\x00" + subject.bytes + b"\x00" + context


def _emit(action: str, *, patient_id: uuid.UUID | None = None, **details: object) -> None:
    key_event.send(
        __name__, action=action, outcome="success", key_id=None, purpose="file", details=details, patient_id=patient_id
    )


# -- epoch key files ---------------------------------------------------------------------
_epoch_cache: dict[uuid.UUID, tuple[AESGCM, float]] = {}
_epoch_lock = threading.Lock()


def _epoch_path(epoch_id: uuid.UUID) -> Path:
    return keys_settings.SUBJECT_KEY_DIR / f"epoch-{epoch_id}.key"


@sensitive_variables()
def _create_epoch(now: dt.datetime) -> SubjectEpoch:
    provider = get_provider()
    epoch = SubjectEpoch(id=uuid.uuid4(), created_at=now)
    secret = bytearray(os.urandom(32))
    try:
        wrapped = provider.wrap_key(bytes(secret), context=epoch.wrap_context())
    finally:
        secret[:] = bytes(32)
    epoch.wrapping_key_id = wrapped.key_id
    _write_epoch_file(epoch, wrapped.key_id, wrapped.blob, create=True)
    epoch.save(force_insert=True)
    _emit("subject_epoch.create", epoch=str(epoch.pk))
    return epoch


def _write_epoch_file(epoch: SubjectEpoch, key_id: str, blob: bytes, *, create: bool) -> None:
    """Write the wrapped epoch key, 0600; ``create`` refuses an existing file, otherwise the
    file is replaced atomically (a master-key rotation)."""
    directory = keys_settings.SUBJECT_KEY_DIR
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = _epoch_path(epoch.pk)
    record = {"epoch": str(epoch.pk), "wrapping_key_id": key_id, "blob": base64.b64encode(blob).decode("ascii")}
    target = path if create else path.with_suffix(f".{os.getpid()}.tmp")
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(record, fh)
        fh.flush()
        os.fsync(fh.fileno())
    if not create:
        os.replace(target, path)


def _read_epoch_file(epoch_id: uuid.UUID) -> dict[str, str]:
    path = _epoch_path(epoch_id)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise UnknownKeyError(
            f"subject epoch {epoch_id} has no key file in {path.parent} (destroyed, or NEONPRO_SUBJECT_KEY_DIR is "
            "not the directory every process shares)"
        ) from None
    with os.fdopen(fd) as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode) or stat.S_IMODE(st.st_mode) & 0o077:
            raise KeysError(f"subject epoch key file {path} must be a regular file of mode 0600")
        record = json.load(fh)
    if not isinstance(record, dict) or record.get("epoch") != str(epoch_id):
        raise KeysError(f"subject epoch key file {path} does not hold epoch {epoch_id}")
    return record


@sensitive_variables()
def _epoch_aead(epoch_id: uuid.UUID) -> AESGCM:
    from keys.flight import provider_calls

    cached = _epoch_cache.get(epoch_id)
    if cached is not None and cached[1] > time.monotonic():
        return cached[0]
    record = _read_epoch_file(epoch_id)
    master, blob = record["wrapping_key_id"], base64.b64decode(record["blob"])
    context = SubjectEpoch(id=epoch_id).wrap_context()
    secret = provider_calls.call(
        ("subject-epoch", epoch_id, master, blob),
        lambda: provider_for(master).unwrap_key(blob, key_id=master, context=context),
        master_key_id=master,
    )
    aead = AESGCM(secret)
    with _epoch_lock:
        _epoch_cache[epoch_id] = (aead, time.monotonic() + keys_settings.CACHE_TTL)
    return aead


def clear_epoch_cache() -> None:
    with _epoch_lock:
        _epoch_cache.clear()


def _destroy_epoch_file(epoch_id: uuid.UUID) -> None:
    """Overwrite the key file, then unlink it (on a copy-on-write or journalling file system the
    overwrite is best effort: the unlink, and keeping the directory out of backups, is the erasure)."""
    path = _epoch_path(epoch_id)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return
    with os.fdopen(fd, "r+b") as fh:
        size = os.fstat(fh.fileno()).st_size
        fh.write(bytes(size))
        fh.flush()
        os.fsync(fh.fileno())
    path.unlink()
    with _epoch_lock:
        _epoch_cache.pop(epoch_id, None)


def current_epoch(*, create: bool, now: dt.datetime | None = None) -> SubjectEpoch | None:
    epoch = SubjectEpoch.objects.filter(retired_at__isnull=True, destroyed_at__isnull=True).first()
    if epoch is None and create:
        return _create_epoch(now or timezone.now())
    return epoch


# -- subject keys ------------------------------------------------------------------------
@sensitive_variables()
def _wrap_under(epoch: SubjectEpoch, row: SubjectKey, secret: bytes) -> None:
    nonce = os.urandom(_NONCE)
    aad = row.wrap_context() + b"|" + epoch.pk.bytes
    row.wrapped_key = nonce + _epoch_aead(epoch.pk).encrypt(nonce, secret, aad)
    row.wrapping_key_id, row.provider, row.epoch = f"{_EPOCH_PROVIDER}:{epoch.pk}", _EPOCH_PROVIDER, epoch.pk


@sensitive_variables()
def unwrap_subject_key(row: SubjectKey) -> bytes:
    """The subject key of a row (live or a saved copy): under its epoch, or the master key for
    rows made before epochs. UnknownKeyError once that epoch is destroyed."""
    from keys.flight import provider_calls

    blob = bytes(row.wrapped_key)
    if row.epoch is None:
        master, context = row.wrapping_key_id, row.wrap_context()
        return provider_calls.call(
            ("subject", row.pk, master, blob),
            lambda: provider_for(master).unwrap_key(blob, key_id=master, context=context),
            master_key_id=master,
        )
    try:
        return _epoch_aead(row.epoch).decrypt(blob[:_NONCE], blob[_NONCE:], row.wrap_context() + b"|" + row.epoch.bytes)
    except InvalidTag:
        raise AuthenticationError("subject key failed authentication", where=f"subject {row.pk}") from None


@sensitive_variables()
def _key_for(subject: uuid.UUID, *, create: bool) -> AESGCM:
    row = SubjectKey.objects.filter(pk=subject).first()
    if row is None:
        if not create:
            raise UnknownKeyError(f"subject {subject} has no key")
        row = _create(subject)
    if row.shredded_at is not None:
        raise UnknownKeyError(f"the key of subject {subject} was destroyed (crypto-shredded)")
    return AESGCM(unwrap_subject_key(row))


@sensitive_variables()
def _create(subject: uuid.UUID) -> SubjectKey:
    with transaction.atomic():
        epoch = current_epoch(create=True)
    assert epoch is not None
    row = SubjectKey(subject=subject)
    _wrap_under(epoch, row, os.urandom(32))
    try:
        with transaction.atomic():
            row.save(force_insert=True)
    except IntegrityError:
        return SubjectKey.objects.get(pk=subject)  # created concurrently
    _emit("subject_key.create")
    return row


def encrypt_for_subject(subject: uuid.UUID, plaintext: bytes, *, context: bytes) -> bytes:
    """Encrypt under the subject's own key (created on first use)."""
    return envelope.seal(_key_for(subject, create=True), _HEADER, plaintext, _context(subject, context))


def decrypt_for_subject(subject: uuid.UUID, token: bytes, *, context: bytes) -> bytes:
    """Raises DecryptionError (UnknownKeyError once the subject's key is shredded)."""
    token = bytes(token)
    if envelope.read_key_id(token) != 0:
        raise DecryptionError("not a subject-key envelope")
    aead = _key_for(subject, create=False)
    try:
        return aead.decrypt(
            token[envelope.HEADER_SIZE : 17], token[17:], token[: envelope.HEADER_SIZE] + _context(subject, context)
        )
    except InvalidTag:
        raise AuthenticationError(
            "authentication failed: altered, or moved from another subject or context", where=f"subject {subject}"
        ) from None


def shred_subject(subject: uuid.UUID) -> bool:
    """Erase a subject's key from the database: everything encrypted under it becomes unreadable
    at once, and finally so once its epoch is destroyed (module docstring). Returns False when
    the subject had no key. The row stays (wrapped material erased) as evidence."""
    row = SubjectKey.objects.select_for_update().filter(pk=subject, shredded_at__isnull=True).first()
    if row is None:
        if SubjectKey.objects.filter(pk=subject).exists():
            raise KeysError(f"the key of subject {subject} was already destroyed")
        return False
    row.wrapped_key, row.shredded_at = b"", timezone.now()
    row.save(update_fields=["wrapped_key", "shredded_at"])
    _emit("subject_key.shred", patient_id=subject, subject=subject, epoch=str(row.epoch) if row.epoch else None)
    return True


@dataclass
class ShredReport:
    subject: uuid.UUID
    dry_run: bool
    had_key: bool
    erased: dict[str, int] = field(default_factory=dict)
    final_by: dt.datetime | None = None

    def summary(self) -> str:
        counts = ", ".join(f"{name}: {n}" for name, n in sorted(self.erased.items())) or "no structured records"
        verb = "would erase" if self.dry_run else "erased"
        key = "its subject key" if self.had_key else "no subject key (none was ever made)"
        final = f"; final in backups by {self.final_by:%Y-%m-%d}" if self.final_by and not self.dry_run else ""
        return f"patient {self.subject}: {verb} {key} and {counts}{final}."


def shred_patient(subject: uuid.UUID, *, dry_run: bool = False, now: dt.datetime | None = None) -> ShredReport:
    """Crypto-shred a patient: erase their structured records (the configured
    NEONPRO_KEYS_SUBJECT_ERASER) and their subject key, in one transaction, audited with the
    patient's id. ``dry_run`` counts and changes nothing. Raises KeysError when already shredded."""
    now = now or timezone.now()
    eraser = keys_settings.SUBJECT_ERASER
    with keys_settings.SYSTEM_CONTEXT("crypto-shred a patient"), transaction.atomic():
        row = SubjectKey.objects.filter(pk=subject).first()
        if row is not None and row.shredded_at is not None:
            raise KeysError(f"the key of subject {subject} was already destroyed")
        erased = eraser(subject, dry_run=dry_run) if eraser is not None else {}
        report = ShredReport(subject=subject, dry_run=dry_run, had_key=row is not None, erased=erased)
        if dry_run:
            return report
        if row is not None:
            shred_subject(subject)
        else:
            _emit("subject_key.shred", patient_id=subject, subject=subject, epoch=None, had_key=False)
        days = keys_settings.SUBJECT_EPOCH_DAYS + keys_settings.SUBJECT_EPOCH_KEEP_DAYS + 1
        report.final_by = now + dt.timedelta(days=days)
        counts: dict[str, object] = {f"erased_{name.rpartition('.')[2].lower()}": n for name, n in erased.items()}
        _emit("patient.crypto_shred", patient_id=subject, **counts)
    return report


# -- epochs: rotation and destruction ------------------------------------------------------
@dataclass
class EpochReport:
    created: uuid.UUID | None = None
    rewrapped: int = 0
    retired: list[uuid.UUID] = field(default_factory=list)
    destroyed: list[uuid.UUID] = field(default_factory=list)

    def summary(self) -> str:
        new = f"new epoch {self.created}, {self.rewrapped} subject keys rewrapped" if self.created else "no new epoch"
        return f"Subject epochs: {new}; {len(self.retired)} retired, {len(self.destroyed)} destroyed."


@sensitive_variables()
def rotate_subject_epoch(*, now: dt.datetime | None = None, force: bool = False, batch: int = 500) -> EpochReport:
    """Start a new epoch when the current one is older than NEONPRO_SUBJECT_EPOCH_DAYS (or
    ``force``), rewrap every live subject key under it, retire the others, and destroy the key
    files of epochs retired more than NEONPRO_SUBJECT_EPOCH_KEEP_DAYS ago. Idempotent and
    resumable: a run killed half-way is finished by the next one."""
    now = now or timezone.now()
    report = EpochReport()
    with keys_settings.SYSTEM_CONTEXT("rotate subject epochs"):
        current = current_epoch(create=False)
        age = dt.timedelta(days=keys_settings.SUBJECT_EPOCH_DAYS)
        if current is None or force or now - current.created_at >= age:
            with transaction.atomic():
                current = _create_epoch(now)
            report.created = current.pk
        while True:
            with transaction.atomic():
                rows = list(
                    SubjectKey.objects.select_for_update(skip_locked=True)
                    .filter(shredded_at__isnull=True)
                    .exclude(epoch=current.pk)
                    .order_by("pk")[:batch]
                )
                for row in rows:
                    secret = unwrap_subject_key(row)
                    _wrap_under(current, row, secret)
                    row.save(update_fields=["wrapped_key", "wrapping_key_id", "provider", "epoch"])
            report.rewrapped += len(rows)
            if len(rows) < batch:
                break
        still_used = set(
            SubjectKey.objects.filter(shredded_at__isnull=True, epoch__isnull=False).values_list("epoch", flat=True)
        )
        for epoch in SubjectEpoch.objects.filter(retired_at__isnull=True).exclude(pk=current.pk):
            if epoch.pk not in still_used:
                epoch.retired_at = now
                epoch.save(update_fields=["retired_at"])
                report.retired.append(epoch.pk)
        keep = dt.timedelta(days=keys_settings.SUBJECT_EPOCH_KEEP_DAYS)
        for epoch in SubjectEpoch.objects.filter(destroyed_at__isnull=True, retired_at__lte=now - keep):
            _destroy_epoch_file(epoch.pk)
            epoch.destroyed_at = now
            epoch.save(update_fields=["destroyed_at"])
            report.destroyed.append(epoch.pk)
            _emit("subject_epoch.destroy", epoch=str(epoch.pk))
        if report.created or report.retired:
            retired = len(report.retired)
            _emit("subject_epoch.rotate", epoch=str(current.pk), rewrapped=report.rewrapped, retired=retired)
    return report


@sensitive_variables()
def rewrap_epoch_files(new_provider: KeyProvider) -> int:
    """Rewrap every epoch key file not destroyed under ``new_provider`` (a master-key rotation).
    Each file is replaced atomically; one not yet rewrapped still opens under the old master key."""
    count = 0
    for epoch in SubjectEpoch.objects.filter(destroyed_at__isnull=True).order_by("created_at"):
        record = _read_epoch_file(epoch.pk)
        master, blob = record["wrapping_key_id"], base64.b64decode(record["blob"])
        secret = provider_for(master).unwrap_key(blob, key_id=master, context=epoch.wrap_context())
        wrapped = new_provider.wrap_key(secret, context=epoch.wrap_context())
        _write_epoch_file(epoch, wrapped.key_id, wrapped.blob, create=False)
        SubjectEpoch.objects.filter(pk=epoch.pk).update(wrapping_key_id=wrapped.key_id)
        count += 1
    return count
