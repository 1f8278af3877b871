"""Crypto-shredding a patient is final within the stated time (issue 18 item 5).

Runs as the application role on PostgreSQL. The "dead row version" is simulated by saving the
SubjectKey row's wrapped bytes before shredding, as a backup or the WAL would keep them; the
attacker holds that copy, the deployment's master key and the epoch-key directory as it is.
"""

from __future__ import annotations

import datetime as dt
import uuid
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from keys.conf import keys_settings
from keys.exceptions import KeysError, UnknownKeyError
from keys.models import SubjectEpoch, SubjectKey
from keys.providers import provider_for
from keys.subjects import (
    _epoch_path,
    decrypt_for_subject,
    encrypt_for_subject,
    rotate_subject_epoch,
    shred_patient,
    unwrap_subject_key,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("system")]
CTX = b"imaging.image:1"


def _copy(subject: uuid.UUID) -> dict[str, Any]:
    row = SubjectKey.objects.get(pk=subject)
    return {f: getattr(row, f) for f in ("subject", "wrapping_key_id", "provider", "epoch")} | {
        "wrapped_key": bytes(row.wrapped_key)
    }


def _recover(saved: dict[str, Any]) -> bytes:
    """Everything available to whoever holds the saved copy: the master key, then the epochs."""
    row = SubjectKey(**saved)
    try:
        return provider_for(row.wrapping_key_id).unwrap_key(
            row.wrapped_key, key_id=row.wrapping_key_id, context=row.wrap_context()
        )
    except KeysError:
        pass
    return unwrap_subject_key(row)


def _clinician(user_factory: Any) -> Any:
    return user_factory("clinician")


def test_a_shredded_patient_is_unrecoverable_from_a_dead_row_version_after_the_epoch_procedure(
    patient_factory: Any, user_factory: Any
) -> None:
    from neonpro.audit.models import AuditEvent
    from patients.models import Patient
    from records.models import Appointment, MedicalRecord

    with connection.cursor() as cursor:
        cursor.execute("SELECT current_user")
        assert cursor.fetchone()[0] == "neonpro_app"
    patient, other = patient_factory(full_name="Shred Me"), patient_factory(full_name="Keep Me")
    clinician = _clinician(user_factory)
    MedicalRecord._plain.create(
        patient=patient, provider=clinician, diagnosis="influenza", allergies="penicillin", notes="private"
    )
    Appointment._plain.create(patient=patient, provider=clinician, scheduled_at=timezone.now(), reason="follow-up")
    scan = encrypt_for_subject(patient.pk, b"chest x-ray", context=CTX)
    kept = encrypt_for_subject(other.pk, b"other x-ray", context=CTX)
    saved = _copy(patient.pk)  # the row version a backup or the WAL keeps
    key = _recover(saved)
    assert saved["epoch"] is not None and saved["wrapping_key_id"].startswith("subject-epoch:")

    out = StringIO()
    call_command("keys", "shred-patient", str(patient.pk), "--yes", "--confirm", str(patient.pk), stdout=out)
    assert "erased its subject key" in out.getvalue() and "final in backups by" in out.getvalue()

    with pytest.raises(UnknownKeyError, match="crypto-shredded"):
        decrypt_for_subject(patient.pk, scan, context=CTX)
    erased = Patient._plain.get(pk=patient.pk)
    assert (erased.full_name, erased.ssn, erased.email, erased.active) == ("[erased]", None, None, False)
    record = MedicalRecord._plain.get(patient=patient)
    assert (record.diagnosis, record.allergies, record.notes) == ("", "", "")
    assert Appointment._plain.get(patient=patient).reason == ""
    events = AuditEvent.objects.filter(action="subject_key.shred", patient_id=patient.pk)
    assert events.count() == 1
    assert AuditEvent.objects.filter(action="patient.crypto_shred", patient_id=patient.pk).exists()

    # Within the window the docs state, the saved copy still opens: shredding is not final yet.
    assert _recover(saved) == key

    now = timezone.now()
    first = rotate_subject_epoch(now=now + dt.timedelta(days=keys_settings.SUBJECT_EPOCH_DAYS))
    assert first.created and first.retired == [saved["epoch"]] and not first.destroyed
    assert decrypt_for_subject(other.pk, kept, context=CTX) == b"other x-ray"  # rewrapped, still readable
    later = now + dt.timedelta(days=keys_settings.SUBJECT_EPOCH_DAYS + keys_settings.SUBJECT_EPOCH_KEEP_DAYS + 1)
    second = rotate_subject_epoch(now=later)
    assert saved["epoch"] in second.destroyed and not _epoch_path(saved["epoch"]).exists()

    with pytest.raises(UnknownKeyError, match="has no key file"):
        _recover(saved)
    assert decrypt_for_subject(other.pk, kept, context=CTX) == b"other x-ray"
    assert SubjectEpoch.objects.get(pk=saved["epoch"]).destroyed_at == later


def test_epoch_key_files_are_0600_and_hold_no_key_in_clear(patient_factory: Any) -> None:
    patient = patient_factory()
    encrypt_for_subject(patient.pk, b"doc", context=CTX)
    epoch = SubjectKey.objects.get(pk=patient.pk).epoch
    path = _epoch_path(epoch)
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o077 == 0
    path.chmod(0o644)
    from keys.keyring import keyring

    keyring.clear()
    with pytest.raises(KeysError, match="mode 0600"):
        decrypt_for_subject(patient.pk, encrypt_for_subject(patient.pk, b"x", context=CTX), context=CTX)
    path.chmod(0o600)


def test_rotation_is_not_due_before_the_epoch_age_and_rewraps_old_master_wrapped_keys(patient_factory: Any) -> None:
    """Keys made before epochs existed (wrapped by the master key) are moved into an epoch."""
    from keys.providers import get_provider

    legacy = uuid.uuid4()
    row = SubjectKey(subject=legacy, provider="local")
    secret = bytes(range(32))
    wrapped = get_provider().wrap_key(secret, context=row.wrap_context())
    row.wrapped_key, row.wrapping_key_id = wrapped.blob, wrapped.key_id
    row.save(force_insert=True)
    assert rotate_subject_epoch().created  # the first epoch
    assert SubjectKey.objects.get(pk=legacy).epoch is not None
    assert unwrap_subject_key(SubjectKey.objects.get(pk=legacy)) == secret
    assert rotate_subject_epoch().created is None  # not due yet
    assert rotate_subject_epoch(force=True).created


def test_master_key_rotation_rewraps_the_epoch_files(patient_factory: Any, settings: Any) -> None:
    import base64
    import os

    from keys.keyring import keyring
    from keys.providers.local import LocalKeyProvider
    from keys.rotation import rotate_master_key

    patient = patient_factory()
    scan = encrypt_for_subject(patient.pk, b"scan", context=CTX)
    raw = os.urandom(32)
    new = LocalKeyProvider(raw)
    rotate_master_key(new)
    settings.NEONPRO_MASTER_KEY = base64.b64encode(raw).decode()  # only the new master key from now on
    epoch = SubjectEpoch.objects.get(pk=SubjectKey.objects.get(pk=patient.pk).epoch)
    assert epoch.wrapping_key_id == new.current_key_id
    assert new.current_key_id in _epoch_path(epoch.pk).read_text()
    keyring.clear()
    assert decrypt_for_subject(patient.pk, scan, context=CTX) == b"scan"


def test_dry_run_changes_nothing(patient_factory: Any) -> None:
    from patients.models import Patient

    patient = patient_factory(full_name="Dry Run")
    scan = encrypt_for_subject(patient.pk, b"scan", context=CTX)
    out = StringIO()
    call_command("keys", "shred-patient", str(patient.pk), "--dry-run", stdout=out)
    assert "would erase its subject key" in out.getvalue() and "patients.Patient: 1" in out.getvalue()
    assert decrypt_for_subject(patient.pk, scan, context=CTX) == b"scan"
    assert Patient._plain.get(pk=patient.pk).full_name == "Dry Run"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--yes"], "--yes needs --confirm"),
        (["--yes", "--confirm", str(uuid.uuid4())], "--yes needs --confirm"),
        ([], "not a terminal"),
    ],
)
def test_shredding_needs_confirmation(patient_factory: Any, extra: list[str], message: str) -> None:
    from patients.models import Patient

    patient = patient_factory(full_name="Not Yet")
    with pytest.raises(CommandError, match=message):
        call_command("keys", "shred-patient", str(patient.pk), *extra, stdout=StringIO())
    assert Patient._plain.get(pk=patient.pk).full_name == "Not Yet"


def test_interactive_confirmation(patient_factory: Any, monkeypatch: Any) -> None:
    import sys

    from patients.models import Patient

    patient = patient_factory(full_name="Asked")
    encrypt_for_subject(patient.pk, b"scan", context=CTX)
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True, raising=False)
    monkeypatch.setattr("builtins.input", lambda prompt: "not-the-id")
    with pytest.raises(CommandError, match="does not match"):
        call_command("keys", "shred-patient", str(patient.pk), stdout=StringIO())
    assert Patient._plain.get(pk=patient.pk).full_name == "Asked"
    monkeypatch.setattr("builtins.input", lambda prompt: str(patient.pk))
    call_command("keys", "shred-patient", str(patient.pk), stdout=StringIO())
    assert Patient._plain.get(pk=patient.pk).full_name == "[erased]"
    with pytest.raises(KeysError, match="already destroyed"):
        shred_patient(patient.pk)


def test_the_daily_epoch_job_is_scheduled() -> None:
    from django_celery_beat.models import PeriodicTask

    from keys.tasks import rotate_subject_epoch_task

    task = PeriodicTask.objects.get(name="keys: rotate subject epochs")
    assert task.enabled and task.task == "keys.rotate_subject_epoch"
    assert rotate_subject_epoch_task.apply().get() == 0
