"""bulk_create seals each column in one pass (keys.bulk), with the guarantees of save()."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.db import IntegrityError, connection, transaction

from keys.bulk import EncryptedQuerySet
from keys.exceptions import AuthenticationError
from keys.keyring import keyring
from keys.models import DataKey
from patients.models import Patient

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("system")]
FIELDS = ("full_name", "date_of_birth", "ssn", "mrn", "email", "phone", "address")


def _patients(n: int, **extra: Any) -> list[Patient]:
    return [
        Patient(
            full_name=f"Bulk Canary {i}",
            date_of_birth=dt.date(1980, 1, 1) + dt.timedelta(days=i),
            mrn=f"BULK-{i:05d}",
            ssn=f"900-77-{i:04d}",
            email=f"bulk{i}@example.org",
            phone=None if i % 3 == 0 else f"+1 555 {i:04d}",
            address=f"{i} Bulk Road",
            **extra,
        )
        for i in range(n)
    ]


def _raw(pk: Any, column: str) -> bytes:
    with connection.cursor() as cursor:
        cursor.execute(f'SELECT "{column}" FROM patients_patient WHERE id = %s', [pk])
        return bytes(cursor.fetchone()[0])


def test_patients_bulk_create_through_the_column_sealer() -> None:
    assert isinstance(Patient.objects.all(), EncryptedQuerySet)


def test_bulk_created_rows_read_back_are_searchable_and_keep_plaintext_on_the_instances() -> None:
    made = Patient.objects.bulk_create(_patients(25))

    assert made[4].full_name == "Bulk Canary 4"  # the instances still hold plaintext
    for original in made:
        loaded = Patient.objects.get(pk=original.pk)
        for name in FIELDS:
            assert getattr(loaded, name) == getattr(original, name)
    assert Patient.objects.get(ssn="900 77 0007").mrn == "BULK-00007"
    assert Patient.objects.filter(phone__isnull=True, mrn__in=[p.mrn for p in made]).count() == 9


def test_each_bulk_value_has_its_own_nonce_and_is_bound_to_its_row() -> None:
    first, second = Patient.objects.bulk_create(_patients(2))
    nonces = {_raw(p.pk, "full_name")[5:17] for p in (first, second)}
    assert len(nonces) == 2
    moved = _raw(first.pk, "address")
    with connection.cursor() as cursor:
        cursor.execute("UPDATE patients_patient SET address = %s WHERE id = %s", [moved, second.pk])

    with pytest.raises(AuthenticationError):
        _ = Patient.objects.get(pk=second.pk).address


def test_chunks_across_budget_blocks_spend_one_unit_per_value(settings: Any) -> None:
    settings.NEONPRO_KEY_COUNT_BLOCK = 7  # many reservations inside one bulk_create
    keyring.clear()
    Patient.objects.bulk_create(_patients(1))  # the key exists and has a reservation
    key = keyring.active("field")
    before = DataKey.objects.get(pk=key.key_id).encryption_count - key.budget  # spent so far

    made = Patient.objects.bulk_create(_patients(30))

    values = sum(getattr(p, name) is not None for p in made for name in FIELDS)
    key = keyring.active("field")
    spent = DataKey.objects.get(pk=key.key_id).encryption_count - key.budget - before
    assert spent == values
    assert all(Patient.objects.get(pk=p.pk).full_name == p.full_name for p in made)


def test_a_failed_bulk_create_leaves_no_sealed_token_behind() -> None:
    existing = Patient.objects.bulk_create(_patients(1))[0]
    clash = _patients(2)
    clash[1].id = existing.pk  # the second row collides: the whole insert fails

    with pytest.raises(IntegrityError), transaction.atomic():
        Patient.objects.bulk_create(clash)

    fresh = clash[0]
    assert not [key for key in fresh.__dict__ if key.startswith("_keys_sealed:")]
    fresh.full_name = "Changed After The Failure"
    fresh.save(force_insert=True)
    assert Patient.objects.get(pk=fresh.pk).full_name == "Changed After The Failure"


def test_rows_without_a_primary_key_get_one_before_sealing() -> None:
    patient = _patients(1)[0]
    patient.id = None  # type: ignore[assignment]

    (made,) = Patient.objects.bulk_create([patient])

    assert made.pk is not None
    assert Patient.objects.get(pk=made.pk).full_name == "Bulk Canary 0"


def test_update_conflicts_go_the_ordinary_way() -> None:
    (made,) = Patient.objects.bulk_create(_patients(1))
    again = _patients(1)[0]
    again.id = made.pk
    again.full_name = "Upserted"

    Patient.objects.bulk_create([again], update_conflicts=True, unique_fields=["id"], update_fields=["full_name"])

    assert Patient.objects.get(pk=made.pk).full_name == "Upserted"


def test_a_failure_while_sealing_leaves_no_token_and_a_later_save_writes_the_current_value() -> None:
    from django.core.exceptions import ValidationError

    rows = _patients(3)
    rows[2].mrn = "M" * 40  # too long for the MRN field: sealing fails at the third row's mrn

    with pytest.raises(ValidationError):
        Patient.objects.bulk_create(rows)

    first = rows[0]
    assert not [key for key in first.__dict__ if key.startswith("_keys_sealed:")]
    first.full_name = "Corrected Name"
    first.save(force_insert=True)
    assert Patient.objects.get(pk=first.pk).full_name == "Corrected Name"


def test_a_token_is_used_only_for_the_value_and_row_it_was_sealed_for() -> None:
    patient = _patients(1)[0]
    field = Patient._meta.get_field("full_name")
    field.seal_column([patient.__dict__])

    patient.full_name = "Changed After Sealing"
    token = field.pre_save(patient, add=True)

    data = {"id": patient.pk}
    assert field.open_value(data, token) == "Changed After Sealing"


def test_after_an_index_key_rotation_bulk_create_indexes_under_the_new_key() -> None:
    from keys.rotation import rotate_data_key

    (before,) = Patient.objects.bulk_create(_patients(1))
    new_index = rotate_data_key("index")

    (made,) = Patient.objects.bulk_create(_patients(2)[1:])

    assert (
        int.from_bytes(_raw(made.pk, "ssn")[:4], "big")
        == new_index.pk
        != int.from_bytes(_raw(before.pk, "ssn")[:4], "big")
    )
    assert Patient.objects.get(ssn=made.ssn).pk == made.pk  # found under the new key
    assert Patient.objects.get(ssn=before.ssn).pk == before.pk  # and the older row under the old one


def test_an_instance_copied_under_a_new_primary_key_is_sealed_for_the_new_row() -> None:
    (original,) = Patient.objects.bulk_create(_patients(1))
    copy = Patient.objects.get(pk=original.pk)
    _ = copy.full_name  # decrypted, and its row context cached for the old pk
    copy.pk = None

    (made,) = Patient.objects.bulk_create([copy])

    assert made.pk != original.pk
    assert Patient.objects.get(pk=made.pk).full_name == original.full_name


def test_mac_keys_never_encrypt_and_a_zero_block_is_refused(settings: Any) -> None:
    from keys import crypto
    from keys.exceptions import KeysError

    for purpose in ("index", "audit", "identity"):
        with pytest.raises(KeysError, match="never encrypt"):
            crypto.encrypt(b"x", context=b"c", purpose=purpose)
    settings.NEONPRO_KEY_COUNT_BLOCK = 0
    keyring.clear()
    with pytest.raises(KeysError, match="at least 1"):
        Patient.objects.bulk_create(_patients(1))
