"""Key lifecycle: rotation, counting, re-encryption, retirement, destruction, master-key rotation."""

from __future__ import annotations

import base64
import datetime as dt
import os
from io import StringIO
from pathlib import Path

import pytest
import time_machine
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone

from keys import keyring as keyring_module
from keys.exceptions import EncryptionError, KeysError, MasterKeyError, UnknownKeyError
from keys.keyring import HARD_LIMIT, keyring
from keys.models import DataKey, ReencryptionJob
from keys.providers import reset_provider
from keys.providers.local import LocalKeyProvider, fingerprint
from keys.reencrypt import reencrypt
from keys.rotation import (
    count_key_usage,
    destroy_data_key,
    keys_due_for_rotation,
    retire_data_key,
    rotate_data_key,
    rotate_due_keys,
    rotate_master_key,
)
from patients.models import Patient

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("system")]


def _field_key_of(patient: Patient, column: str = "full_name") -> int:
    with connection.cursor() as cursor:
        cursor.execute(f'SELECT "{column}" FROM patients_patient WHERE id = %s', [patient.pk])
        raw = bytes(cursor.fetchone()[0])
    offset = 20 if column in ("ssn", "mrn", "email", "phone") else 0
    return int.from_bytes(raw[offset + 1 : offset + 5], "big")


def _active(purpose: str) -> DataKey:
    return DataKey.objects.get(purpose=purpose, status="active")


def _settled(key: DataKey) -> dt.datetime:
    """A moment past the key's quiet period (the key cache TTL plus the longest transaction)."""
    from keys.rotation import settled_at

    allowed = settled_at(key)
    assert allowed is not None
    return allowed


@pytest.fixture
def fresh_keys() -> None:
    """New active keys for this test. Other tests commit rows (from threads and processes)
    under their keys, so keys are never deleted here: whole-table jobs must still read them."""
    rotate_data_key("field")
    rotate_data_key("index")


def test_rotation_switches_new_writes_and_keeps_old_values_readable(patient_factory, fresh_keys) -> None:  # type: ignore[no-untyped-def]
    before = patient_factory(full_name="Before Rotation")
    old = _active("field")
    new = rotate_data_key("field")
    old.refresh_from_db()
    assert (old.status, new.status) == ("decrypt_only", "active") and old.deactivated_at
    after = patient_factory(full_name="After Rotation")
    assert _field_key_of(before) == old.pk and _field_key_of(after) == new.pk
    assert Patient.objects.get(pk=before.pk).full_name == "Before Rotation"
    assert Patient.objects.get(pk=after.pk).full_name == "After Rotation"


def test_encryptions_are_counted_in_reserved_blocks(patient_factory, settings, fresh_keys) -> None:  # type: ignore[no-untyped-def]
    settings.NEONPRO_KEY_COUNT_BLOCK = 10
    for _ in range(3):
        patient_factory()  # 7 encrypted fields each: 21 encryptions
    count = _active("field").encryption_count
    assert 21 <= count <= 30, "an upper bound, at most one block above the truth"


def test_a_key_at_the_nist_limit_refuses_to_encrypt(patient_factory, fresh_keys) -> None:  # type: ignore[no-untyped-def]
    patient_factory()
    DataKey.objects.filter(pk=_active("field").pk).update(encryption_count=HARD_LIMIT)
    keyring.clear()
    with pytest.raises(EncryptionError, match="encryption limit; rotate"):
        patient_factory()


def test_rotation_is_due_by_age_or_by_count(patient_factory, settings, fresh_keys) -> None:  # type: ignore[no-untyped-def]
    settings.NEONPRO_KEY_ROTATION = {"field": {"max_age_days": 30, "max_encryptions": 1000}}
    settings.NEONPRO_KEY_COUNT_BLOCK = 10
    patient_factory()
    now = timezone.now()
    assert keys_due_for_rotation(now) == []
    due = keys_due_for_rotation(now + dt.timedelta(days=31))
    assert [(d.purpose, d.reason) for d in due] == [("field", "31 days old")]
    DataKey.objects.filter(purpose="field").update(encryption_count=1000)
    assert [d.purpose for d in keys_due_for_rotation(now)] == ["field"]
    [(reason, key)] = rotate_due_keys(now)
    assert key.status == "active" and key.purpose == "field" and reason.reason == "1000 encryptions"


def test_reencryption_moves_every_value_and_keeps_searches_working(patient_factory, fresh_keys) -> None:  # type: ignore[no-untyped-def]
    patients = [patient_factory(ssn=f"321-00-{i:04d}") for i in range(23)]
    old_field, old_index = _active("field"), _active("index")
    rotate_data_key("field")
    rotate_data_key("index")
    assert sum(count_key_usage(old_field).values()) == 23 * 7
    assert sum(count_key_usage(old_index).values()) == 23 * 4

    jobs = reencrypt("field", batch=5)
    assert all(job.status == "done" for job in jobs)
    assert count_key_usage(old_field) == {} and count_key_usage(old_index) == {}
    keyring.clear()
    for p in patients:
        fresh = Patient.objects.get(pk=p.pk)
        assert (fresh.full_name, fresh.ssn) == (p.full_name, p.ssn)
    assert Patient.objects.get(ssn="321-00-0007") == patients[7]
    rerun = reencrypt("field", batch=5)
    assert sum(job.rows_changed for job in rerun) == 0, "a second run finds nothing to do"


def test_reencryption_resumes_from_its_checkpoint(patient_factory, fresh_keys) -> None:  # type: ignore[no-untyped-def]
    for _ in range(12):
        patient_factory()
    old = _active("field")
    rotate_data_key("field")
    [job] = [j for j in reencrypt("field", batch=4, max_batches=2) if j.model == "patients.Patient"]
    assert job.status == "running" and job.rows_done == 8 and job.last_pk is not None
    assert sum(count_key_usage(old).values()) <= 12 * 7  # (other tests' committed rows sort first, too)
    resumed = next(j for j in reencrypt("field", batch=4) if j.model == "patients.Patient")
    assert resumed.pk == job.pk and resumed.status == "done"
    assert count_key_usage(old) == {}


def test_a_rotation_during_a_job_restarts_it_towards_the_new_key(patient_factory, fresh_keys) -> None:  # type: ignore[no-untyped-def]
    for _ in range(6):
        patient_factory()
    rotate_data_key("field")
    [first] = reencrypt("field", batch=2, max_batches=1, labels=["patients.Patient"])
    rotate_data_key("field")
    # Larger batches to finish: other tests' committed patients are in the table too, and
    # walking them two by two outlasts the audit connection's idle-in-transaction limit.
    [second] = reencrypt("field", batch=500, labels=["patients.Patient"])
    first.refresh_from_db()
    assert first.status == "failed" and "superseded" in first.error
    assert second.status == "done" and second.target_key_id == _active("field").pk


def test_retire_and_destroy_count_instead_of_assuming(patient_factory, fresh_keys) -> None:  # type: ignore[no-untyped-def]
    patient = patient_factory(full_name="Shred Me")
    old = _active("field")
    with pytest.raises(KeysError, match="is active; rotate it first"):
        destroy_data_key(old, confirm=old.pk)
    rotate_data_key("field")
    old.refresh_from_db()
    later = _settled(old)
    with pytest.raises(KeysError, match=r"still protects 7 values .*reencrypt"):
        retire_data_key(old, now=later)
    with pytest.raises(KeysError, match="--crypto-shred"):
        destroy_data_key(old, confirm=old.pk, now=later)
    usage = destroy_data_key(old, confirm=old.pk, crypto_shred=True, now=later)
    assert sum(usage.values()) == 7
    old.refresh_from_db()
    assert old.status == "destroyed" and bytes(old.wrapped_key) == b""
    keyring.clear()
    with pytest.raises(UnknownKeyError, match=f"data key {old.pk}"):
        Patient.objects.get(pk=patient.pk).full_name  # noqa: B018


def test_retire_after_reencryption(patient_factory, fresh_keys) -> None:  # type: ignore[no-untyped-def]
    patient_factory()
    old = _active("field")
    rotate_data_key("field")
    reencrypt("field")
    old.refresh_from_db()
    retire_data_key(old, now=_settled(old))
    assert old.status == "retired" and old.retired_at


def test_master_key_rotation_rewraps_keys_and_touches_no_data(patient_factory, settings, tmp_path, fresh_keys) -> None:  # type: ignore[no-untyped-def]
    patient = patient_factory(full_name="Rewrapped")
    with connection.cursor() as cursor:
        cursor.execute("SELECT full_name FROM patients_patient WHERE id = %s", [patient.pk])
        ciphertext_before = bytes(cursor.fetchone()[0])
    old_kek_id = _active("field").wrapping_key_id
    new_key = os.urandom(32)
    count = rotate_master_key(LocalKeyProvider(new_key))
    assert count >= 2
    assert {k.wrapping_key_id for k in DataKey.objects.usable()} == {fingerprint(new_key)} != {old_kek_id}
    with connection.cursor() as cursor:
        cursor.execute("SELECT full_name FROM patients_patient WHERE id = %s", [patient.pk])
        assert bytes(cursor.fetchone()[0]) == ciphertext_before, "no data row is rewritten"
    settings.NEONPRO_MASTER_KEY = base64.b64encode(new_key).decode()
    assert Patient.objects.get(pk=patient.pk).full_name == "Rewrapped"


def test_master_key_rotation_with_a_wrong_old_key_changes_nothing(patient_factory, settings, fresh_keys) -> None:  # type: ignore[no-untyped-def]
    patient_factory()
    snapshot = {k.pk: (bytes(k.wrapped_key), k.wrapping_key_id) for k in DataKey.objects.all()}
    settings.NEONPRO_MASTER_KEY = base64.b64encode(os.urandom(32)).decode()
    with pytest.raises(MasterKeyError):
        rotate_master_key(LocalKeyProvider(os.urandom(32)))
    assert {k.pk: (bytes(k.wrapped_key), k.wrapping_key_id) for k in DataKey.objects.all()} == snapshot


def test_previous_master_keys_still_unwrap_during_the_switch(patient_factory, settings, fresh_keys) -> None:  # type: ignore[no-untyped-def]
    patient = patient_factory(full_name="Switching")
    old_b64 = settings.NEONPRO_MASTER_KEY
    settings.NEONPRO_MASTER_KEY = base64.b64encode(os.urandom(32)).decode()
    settings.NEONPRO_MASTER_KEY_PREVIOUS = [old_b64]
    keyring.clear()
    assert Patient.objects.get(pk=patient.pk).full_name == "Switching"


def test_switching_provider_local_to_pkcs11_is_a_master_key_rotation(
    patient_factory, settings, hsm, fresh_keys
) -> None:  # type: ignore[no-untyped-def]
    patient = patient_factory(full_name="Into The HSM")
    local_b64 = settings.NEONPRO_MASTER_KEY
    count = rotate_master_key(hsm.provider())
    assert count >= 2
    assert all(k.provider == "pkcs11" for k in DataKey.objects.usable())
    settings.NEONPRO_PKCS11_LIB, settings.NEONPRO_PKCS11_TOKEN, settings.NEONPRO_PKCS11_PIN = (
        hsm.lib,
        hsm.token,
        hsm.pin,
    )
    settings.NEONPRO_PKCS11_KEY_LABEL = "neonpro-kek"
    settings.NEONPRO_KEY_PROVIDER = "pkcs11"
    settings.NEONPRO_MASTER_KEY = None  # the local key is gone from the configuration
    reset_provider()
    keyring.clear()
    assert Patient.objects.get(pk=patient.pk).full_name == "Into The HSM"
    settings.NEONPRO_MASTER_KEY = local_b64


def test_commands_rotate_usage_retire_destroy(patient_factory, fresh_keys) -> None:  # type: ignore[no-untyped-def]
    patient_factory()
    old = _active("field")
    out = StringIO()
    call_command("keys", "rotate", "--purpose", "field", stdout=out)
    assert "new active key" in out.getvalue() and "reencrypt" in out.getvalue()
    out = StringIO()
    call_command("keys", "usage", str(old.pk), stdout=out)
    assert "patients.Patient.full_name" in out.getvalue() and "7 values in total" in out.getvalue()
    old.refresh_from_db()
    # The clock past the quiet period (tests/keys/test_lifecycle.py tests the wait itself).
    with time_machine.travel(_settled(old) + dt.timedelta(seconds=1), tick=True):
        with pytest.raises(CommandError, match="still protects"):
            call_command("keys", "retire", str(old.pk))
        call_command("keys", "reencrypt", stdout=StringIO(), stderr=StringIO())
        call_command("keys", "retire", str(old.pk), stdout=StringIO())
        out = StringIO()
        call_command("keys", "destroy", str(old.pk), "--yes", "--confirm", str(old.pk), stdout=out)
    assert "destroyed" in out.getvalue()
    out = StringIO()
    call_command("keys", "status", stdout=out)
    assert "RESERVED*" in out.getvalue() and "upper bound" in out.getvalue()
    with pytest.raises(CommandError, match="no data key 999999"):
        call_command("keys", "usage", "999999")


def test_rotate_master_command_with_a_new_local_key_file(patient_factory, settings, tmp_path: Path, fresh_keys) -> None:  # type: ignore[no-untyped-def]
    patient = patient_factory(full_name="Runbook")
    target = tmp_path / "next-master.key"
    call_command("keys", "create-master", "--path", str(target), stdout=StringIO())  # step 0
    assert target.stat().st_mode & 0o777 == 0o600
    # step 1: the new key is current, the old one still unwraps (the runbook in docs/keys.md)
    settings.NEONPRO_MASTER_KEY_PREVIOUS = [settings.NEONPRO_MASTER_KEY]
    settings.NEONPRO_MASTER_KEY, settings.NEONPRO_MASTER_KEY_FILE = None, str(target)
    out = StringIO()
    call_command("keys", "rotate-master", "--new-key-file", str(target), stdout=out)
    assert "NEONPRO_MASTER_KEY_FILE" in out.getvalue() and "NEONPRO_MASTER_KEY_PREVIOUS_FILES" in out.getvalue()
    settings.NEONPRO_MASTER_KEY_PREVIOUS = []
    keyring.clear()
    assert Patient.objects.get(pk=patient.pk).full_name == "Runbook"


def test_cached_keys_keep_working_when_the_provider_fails(patient_factory, settings, monkeypatch, fresh_keys) -> None:  # type: ignore[no-untyped-def]
    """HSM down: values whose key is cached still open; anything needing an unwrap fails closed."""
    from keys.exceptions import ProviderError

    patient = patient_factory(full_name="Cached")
    Patient.objects.get(pk=patient.pk).full_name  # noqa: B018 - warm the cache

    def down(*args: object, **kwargs: object) -> bytes:
        raise ProviderError("HSM unreachable", permanent=False)

    monkeypatch.setattr(LocalKeyProvider, "unwrap_key", down)
    assert Patient.objects.get(pk=patient.pk).full_name == "Cached"
    keyring.clear()
    with pytest.raises(ProviderError, match="HSM unreachable"):
        Patient.objects.get(pk=patient.pk).full_name  # noqa: B018


def test_the_counter_block_is_settable(settings) -> None:  # type: ignore[no-untyped-def]
    settings.NEONPRO_KEY_COUNT_BLOCK = 123
    assert keyring_module.keys_settings.COUNT_BLOCK == 123
    assert ReencryptionJob._meta.get_field("last_pk")


def test_the_daily_rotation_is_scheduled_in_django_celery_beat() -> None:
    from django_celery_beat.models import PeriodicTask

    task = PeriodicTask.objects.get(name="keys: rotate due data keys")
    assert task.enabled and task.task == "keys.rotate_due_keys"
    assert (task.crontab.hour, task.crontab.minute) == ("3", "15")


def test_the_beat_task_rotates_due_keys_and_queues_reencryption(patient_factory, settings, fresh_keys) -> None:  # type: ignore[no-untyped-def]
    from keys.tasks import rotate_due_keys_task

    settings.NEONPRO_KEY_ROTATION = {"field": {"max_age_days": 0}}
    patient = patient_factory(full_name="Beat")
    old = _active("field")
    rotated = rotate_due_keys_task.apply().get()
    assert old.pk not in rotated and _active("field").pk in rotated
    assert Patient.objects.get(pk=patient.pk).full_name == "Beat"


def test_rotate_master_to_pkcs11_command(patient_factory, settings, hsm, fresh_keys) -> None:  # type: ignore[no-untyped-def]
    patient = patient_factory(full_name="Command Switch")
    settings.NEONPRO_PKCS11_LIB, settings.NEONPRO_PKCS11_TOKEN, settings.NEONPRO_PKCS11_PIN = (
        hsm.lib,
        hsm.token,
        hsm.pin,
    )
    settings.NEONPRO_PKCS11_KEY_LABEL = "neonpro-kek"
    settings.NEONPRO_KEY_PROVIDER, settings.NEONPRO_KEY_PROVIDER_FALLBACKS = "pkcs11", ["local"]  # the runbook's step 2
    out = StringIO()
    call_command("keys", "rotate-master", "--to", "pkcs11", stdout=out)
    assert "NEONPRO_KEY_PROVIDER=pkcs11" in out.getvalue() and "NEONPRO_KEY_PROVIDER_FALLBACKS" in out.getvalue()
    assert {k.provider for k in DataKey.objects.usable()} == {"pkcs11"}
    settings.NEONPRO_KEY_PROVIDER = "pkcs11"
    settings.NEONPRO_KEY_PROVIDER_FALLBACKS = ["local"]
    keyring.clear()
    assert Patient.objects.get(pk=patient.pk).full_name == "Command Switch"
    out = StringIO()
    call_command("keys", "verify", stdout=out)
    assert "passed" in out.getvalue()
