"""The key cache: no unwrap on the hot path, and rotation/destruction seen within the TTL."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from keys import keyring as keyring_module
from keys import sealing
from keys.exceptions import UnknownKeyError
from keys.keyring import keyring
from keys.models import DataKey
from keys.services import create_data_key
from patients.models import Patient

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("system")]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(keyring_module, "_monotonic", fake)
    monkeypatch.setattr(sealing, "_monotonic", fake)
    return fake


def _key_id(patient: Patient, field: str = "full_name") -> int:
    return int.from_bytes(bytes(patient.__dict__[field])[1:5], "big")


def test_new_writes_use_a_new_active_key_after_the_ttl(patient_factory, clock, settings) -> None:  # type: ignore[no-untyped-def]
    settings.NEONPRO_KEY_CACHE_TTL = 60
    first = patient_factory()
    old = DataKey.objects.get(purpose="field", status="active")
    DataKey.objects.filter(pk=old.pk).update(status=DataKey.Status.DECRYPT_ONLY)
    new = create_data_key("field")

    cached = patient_factory()  # within the TTL this process still writes under the old key
    assert _key_id(Patient.objects.get(pk=cached.pk)) == old.pk

    clock.now += 61
    fresh = patient_factory()
    assert _key_id(Patient.objects.get(pk=fresh.pk)) == new.pk
    assert Patient.objects.get(pk=first.pk).full_name == first.full_name  # old values still open


def test_a_destroyed_key_stops_working_after_the_ttl(patient_factory, clock, settings) -> None:  # type: ignore[no-untyped-def]
    settings.NEONPRO_KEY_CACHE_TTL = 60
    patient = patient_factory()
    assert Patient.objects.get(pk=patient.pk).full_name
    DataKey.objects.filter(purpose="field").update(status=DataKey.Status.DESTROYED, wrapped_key=b"")
    assert Patient.objects.get(pk=patient.pk).full_name  # cached until the TTL passes
    clock.now += 61
    with pytest.raises(UnknownKeyError):
        Patient.objects.get(pk=patient.pk).full_name  # noqa: B018


def test_clear_forgets_every_key(patient_factory) -> None:  # type: ignore[no-untyped-def]
    patient_factory()
    assert keyring._aeads and keyring._active
    keyring.clear()
    assert not keyring._aeads and not keyring._active and keyring._index is None


def test_keys_are_created_on_first_use_and_only_once(patient_factory, reinstall_identity_keys) -> None:  # type: ignore[no-untyped-def]
    DataKey.objects.all().delete()  # a fresh installation (other tests may have committed keys)
    reinstall_identity_keys()  # the identity key row-level security verifies: as `migrate` installs it
    keyring.clear()
    patient_factory()
    keyring.clear()
    patient_factory()
    assert sorted(DataKey.objects.values_list("purpose", flat=True)) == [
        "audit",
        "field",
        "identity",
        "index",
    ]  # audit: the keyed chain


def test_migrations_are_in_sync_with_the_models() -> None:
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)


def test_a_ttl_reload_of_the_same_key_keeps_its_reserved_budget(patient_factory, clock, settings) -> None:  # type: ignore[no-untyped-def]
    settings.NEONPRO_KEY_CACHE_TTL = 60
    settings.NEONPRO_KEY_COUNT_BLOCK = 1000
    patient_factory()
    key = DataKey.objects.get(purpose="field", status="active")
    before = key.encryption_count
    for _ in range(5):
        clock.now += 61  # the cache expires again and again; the key stays the same
        patient_factory()
    key.refresh_from_db()
    assert key.encryption_count == before, "no new block while the reserved one lasts"
