"""Stored values that were altered, truncated, moved, or whose key is gone fail loudly and precisely."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, connection, transaction

from keys.exceptions import AuthenticationError, DecryptionError, MasterKeyError, TruncatedError, UnknownKeyError
from keys.models import DataKey
from patients.models import Patient

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("system")]


def _raw(pk: object, column: str) -> bytes:
    with connection.cursor() as cursor:
        cursor.execute(f'SELECT "{column}" FROM patients_patient WHERE id = %s', [pk])
        return bytes(cursor.fetchone()[0])


def _write(pk: object, column: str, value: bytes) -> bool:
    """Write raw bytes as a DBA could; False when the column's CHECK constraint refuses them."""
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f'UPDATE patients_patient SET "{column}" = %s WHERE id = %s', [value, pk])
    except IntegrityError:
        return False
    return True


def _read(pk: object, field: str) -> object:
    return getattr(Patient.objects.get(pk=pk), field)


def test_every_flipped_byte_in_a_stored_value_fails(patient_factory) -> None:  # type: ignore[no-untyped-def]
    patient = patient_factory(full_name="Tamper Target")
    original = _raw(patient.pk, "full_name")
    for position in range(len(original)):
        tampered = bytearray(original)
        tampered[position] ^= 0x01
        if not _write(patient.pk, "full_name", bytes(tampered)):
            assert position == 0, "only the version byte is policed by the database"
            continue
        with pytest.raises(DecryptionError) as info:
            _read(patient.pk, "full_name")
        message = str(info.value)
        assert "Tamper" not in message
        assert "patients.patient.full_name" in message and str(patient.pk) in message
    _write(patient.pk, "full_name", original)
    assert _read(patient.pk, "full_name") == "Tamper Target"


def test_flipped_blind_index_byte_fails_decryption(patient_factory) -> None:  # type: ignore[no-untyped-def]
    patient = patient_factory()
    original = _raw(patient.pk, "ssn")
    tampered = bytearray(original)
    tampered[10] ^= 0x80
    _write(patient.pk, "ssn", bytes(tampered))
    with pytest.raises(AuthenticationError):
        _read(patient.pk, "ssn")


def test_database_refuses_values_that_are_not_envelopes(patient_factory) -> None:  # type: ignore[no-untyped-def]
    patient = patient_factory()
    assert not _write(patient.pk, "full_name", _raw(patient.pk, "full_name")[:20])
    assert not _write(patient.pk, "full_name", b"Plain Text Name That Is Long Enough To Pass Length")
    assert not _write(patient.pk, "ssn", b"\x01" + bytes(60))  # searchable: envelope starts after the index
    assert _read(patient.pk, "full_name") == "Canary Person 1"


def test_truncated_value_is_named_as_such(patient_factory) -> None:  # type: ignore[no-untyped-def]
    from keys.fields import EncryptedMixin

    patient = patient_factory()
    field = Patient._meta.get_field("full_name")
    assert isinstance(field, EncryptedMixin)
    with pytest.raises(TruncatedError, match=r"patients\.patient\.full_name of row .*shorter than"):
        field.open_value({"id": patient.pk}, _raw(patient.pk, "full_name")[:20])
    assert _write(patient.pk, "address", _raw(patient.pk, "address")[:-1])
    with pytest.raises(AuthenticationError, match="altered, truncated, or moved"):
        _read(patient.pk, "address")


def test_value_swapped_between_rows_fails(patient_factory) -> None:  # type: ignore[no-untyped-def]
    alice, bob = patient_factory(full_name="Alice"), patient_factory(full_name="Bob")
    _write(bob.pk, "full_name", _raw(alice.pk, "full_name"))
    with pytest.raises(AuthenticationError, match=str(bob.pk)):
        _read(bob.pk, "full_name")
    _write(bob.pk, "ssn", _raw(alice.pk, "ssn"))
    with pytest.raises(AuthenticationError):
        _read(bob.pk, "ssn")


def test_value_swapped_between_columns_fails(patient_factory) -> None:  # type: ignore[no-untyped-def]
    patient = patient_factory()
    _write(patient.pk, "full_name", _raw(patient.pk, "address"))
    with pytest.raises(AuthenticationError, match="full_name"):
        _read(patient.pk, "full_name")
    _write(patient.pk, "phone", _raw(patient.pk, "ssn"))  # both searchable, same normaliser
    with pytest.raises(AuthenticationError, match="phone"):
        _read(patient.pk, "phone")


def test_unknown_key_id_is_named(patient_factory) -> None:  # type: ignore[no-untyped-def]
    patient = patient_factory()
    raw = bytearray(_raw(patient.pk, "full_name"))
    raw[1:5] = (999_999).to_bytes(4, "big")
    _write(patient.pk, "full_name", bytes(raw))
    with pytest.raises(UnknownKeyError, match="data key 999999"):
        _read(patient.pk, "full_name")


def test_destroyed_key_cannot_decrypt(patient_factory) -> None:  # type: ignore[no-untyped-def]
    patient = patient_factory()
    key_id = int.from_bytes(_raw(patient.pk, "full_name")[1:5], "big")
    DataKey.objects.filter(pk=key_id).update(status=DataKey.Status.DESTROYED, wrapped_key=b"")
    from keys.keyring import keyring

    keyring.clear()
    with pytest.raises(UnknownKeyError, match=f"data key {key_id}"):
        _read(patient.pk, "full_name")


def test_wrong_master_key_fails_with_both_key_ids(patient_factory, request) -> None:  # type: ignore[no-untyped-def]
    patient = patient_factory()
    wrapped_by = DataKey.objects.get(purpose="field", status="active").wrapping_key_id
    request.getfixturevalue("other_master_key")
    with pytest.raises(MasterKeyError, match="master key is wrong or was replaced") as info:
        _read(patient.pk, "full_name")
    assert wrapped_by in str(info.value)


def test_tampered_wrapped_data_key_is_detected(patient_factory) -> None:  # type: ignore[no-untyped-def]
    patient = patient_factory()
    datakey = DataKey.objects.get(purpose="field", status="active")
    blob = bytearray(datakey.wrapped_key)
    blob[-1] ^= 1
    DataKey.objects.filter(pk=datakey.pk).update(wrapped_key=bytes(blob))
    from keys.exceptions import ProviderError
    from keys.keyring import keyring

    keyring.clear()
    with pytest.raises(ProviderError, match=f"data key {datakey.pk}.*failed authentication"):
        _read(patient.pk, "full_name")


def test_wrapped_key_moved_to_another_row_is_detected(patient_factory) -> None:  # type: ignore[no-untyped-def]
    patient_factory()
    field_key = DataKey.objects.get(purpose="field", status="active")
    index_key = DataKey.objects.get(purpose="index", status="active")
    DataKey.objects.filter(pk=field_key.pk).update(wrapped_key=index_key.wrapped_key)
    from keys.exceptions import ProviderError
    from keys.keyring import keyring

    keyring.clear()
    with pytest.raises(ProviderError, match="failed authentication"):
        keyring.aead(field_key.pk)


def test_index_keys_never_decrypt_envelopes(patient_factory) -> None:  # type: ignore[no-untyped-def]
    patient = patient_factory()
    index_key = DataKey.objects.get(purpose="index", status="active")
    raw = bytearray(_raw(patient.pk, "full_name"))
    raw[1:5] = index_key.pk.to_bytes(4, "big")
    _write(patient.pk, "full_name", bytes(raw))
    with pytest.raises(UnknownKeyError):
        _read(patient.pk, "full_name")
