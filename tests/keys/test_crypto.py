"""keys.crypto, the one crypto API: envelopes under the active key of a purpose, the encryption
budget and hard limit on every path that encrypts, blind indexes under the active index key,
and one exception family for every value that does not open."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable

import pytest
from django.contrib.auth import authenticate
from django.db import connection, transaction

from keys import crypto, envelope
from keys.exceptions import (
    AuthenticationError,
    DecryptionError,
    EncryptionError,
    TruncatedError,
    UnknownKeyError,
    UnsupportedVersionError,
)
from keys.keyring import HARD_LIMIT, keyring
from keys.models import DataKey
from keys.reencrypt import reencrypt
from keys.rotation import rotate_data_key
from keys.subjects import encrypt_for_subject
from neonpro.audit.models import AuditEvent
from tests.keys.sample_models import EncryptedSample

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("system")]

CONTEXT = b"tests.crypto\x00" + bytes(16)
ENCRYPTING_PURPOSES = ("field", "file", "session")


def _active(purpose: str) -> DataKey:
    return DataKey.objects.get(purpose=purpose, status="active")


def _fresh_key(purpose: str) -> DataKey:
    """A new active key for ``purpose`` with nothing counted yet, and an empty key cache."""
    key = rotate_data_key(purpose)
    keyring.clear()
    assert key.encryption_count == 0
    return key


# -- round trips and binding --------------------------------------------------------------


@pytest.mark.parametrize("purpose", ENCRYPTING_PURPOSES)
def test_encrypt_uses_the_active_key_of_the_purpose_and_decrypts(purpose: str) -> None:
    key = _fresh_key(purpose)
    token = crypto.encrypt(b"secret value", context=CONTEXT, purpose=purpose)
    assert envelope.read_key_id(token) == key.pk
    assert len(token) == envelope.OVERHEAD + len(b"secret value")
    assert b"secret value" not in token
    assert crypto.decrypt(token, context=CONTEXT) == b"secret value"


def test_the_default_purpose_is_field() -> None:
    key = _fresh_key("field")
    assert envelope.read_key_id(crypto.encrypt(b"x", context=CONTEXT)) == key.pk


def test_text_and_bytes_contexts_are_the_same_context() -> None:
    token = crypto.encrypt(b"value", context="patients.patient.note\x00row-1")
    assert crypto.decrypt(token, context=b"patients.patient.note\x00row-1") == b"value"
    assert crypto.decrypt(memoryview(token), context="patients.patient.note\x00row-1") == b"value"
    with pytest.raises(AuthenticationError):
        crypto.decrypt(token, context="patients.patient.note\x00row-2")


def test_values_written_under_an_older_key_still_decrypt() -> None:
    old_token = crypto.encrypt(b"before", context=CONTEXT)
    new = _fresh_key("field")
    new_token = crypto.encrypt(b"after", context=CONTEXT)
    assert envelope.read_key_id(new_token) == new.pk != envelope.read_key_id(old_token)
    assert crypto.decrypt(old_token, context=CONTEXT) == b"before"
    assert crypto.decrypt(new_token, context=CONTEXT) == b"after"


# -- the DecryptionError contract -----------------------------------------------------------


def test_a_key_id_zero_header_is_an_unknown_key_not_a_crash() -> None:
    """The fuzz finding: a 33-byte version-1 envelope naming key id 0 raised ValueError."""
    with pytest.raises(UnknownKeyError) as info:
        crypto.decrypt(b"\x01" + bytes(32), context=b"")
    assert info.value.key_id == 0


def test_a_subject_blob_is_not_a_data_key_envelope() -> None:
    blob = encrypt_for_subject(uuid.uuid4(), b"x-ray", context=CONTEXT)
    with pytest.raises(UnknownKeyError):
        crypto.decrypt(blob, context=CONTEXT)


def test_an_index_key_never_decrypts() -> None:
    crypto.blind_index("x", context=b"c")
    index_key = _active("index")
    token = bytearray(crypto.encrypt(b"value", context=CONTEXT))
    token[1:5] = index_key.pk.to_bytes(4, "big")
    with pytest.raises(UnknownKeyError, match=f"data key {index_key.pk}"):
        crypto.decrypt(bytes(token), context=CONTEXT)


@pytest.mark.parametrize(
    ("token", "error"),
    [
        (b"", TruncatedError),
        (b"\x01" + bytes(31), TruncatedError),
        (b"\x02" + bytes(32), UnsupportedVersionError),
        (b"\x00" + bytes(40), UnsupportedVersionError),
        (b"\x01" + (2**32 - 1).to_bytes(4, "big") + bytes(28), UnknownKeyError),
    ],
    ids=["empty", "one-short", "version-2", "version-0", "largest-key-id"],
)
def test_malformed_envelopes_raise_their_decryption_error(token: bytes, error: type[DecryptionError]) -> None:
    with pytest.raises(error):
        crypto.decrypt(token, context=CONTEXT)


def test_a_tampered_envelope_fails_authentication_and_names_only_its_key() -> None:
    token = bytearray(crypto.encrypt(b"900-55-0001 Jane", context=CONTEXT))
    token[-1] ^= 1
    with pytest.raises(AuthenticationError) as info:
        crypto.decrypt(bytes(token), context=CONTEXT)
    assert info.value.key_id == envelope.read_key_id(bytes(token))
    assert "900-55" not in str(info.value) and "Jane" not in str(info.value)


def test_the_keyring_refuses_ids_and_headers_no_key_can_have() -> None:
    for key_id in (0, -1, 2**32):
        with pytest.raises(UnknownKeyError):
            keyring.aead(key_id)
    for header in (b"", b"\x01", b"\x01\x00\x00\x00\x01\x00", b"\x01" * 40):
        with pytest.raises(DecryptionError, match="header is 5 bytes"):
            keyring.aead_for_header(header)
    with pytest.raises(UnknownKeyError):
        keyring.aead_for_header(b"\x01" + bytes(4))


# -- the encryption budget and the hard limit, on every path that encrypts -------------------


def _encrypt_with_crypto(n: int) -> None:
    for _ in range(n):
        crypto.encrypt(b"v", context=CONTEXT)


def _encrypt_with_save(n: int) -> None:
    for _ in range(n):
        EncryptedSample.objects.create(text="v")  # one encrypted field set: one encryption


def _encrypt_with_bulk_create(n: int) -> None:
    EncryptedSample.objects.bulk_create([EncryptedSample(text="v") for _ in range(n)])


WRITERS: dict[str, Callable[[int], None]] = {
    "crypto.encrypt": _encrypt_with_crypto,
    "save": _encrypt_with_save,
    "bulk_create": _encrypt_with_bulk_create,
}


@pytest.mark.parametrize("write", WRITERS.values(), ids=WRITERS.keys())
def test_every_encryption_is_paid_for_by_a_reserved_block(write: Callable[[int], None], settings) -> None:  # type: ignore[no-untyped-def]
    settings.NEONPRO_KEY_COUNT_BLOCK = 3
    key = _fresh_key("field")
    write(7)  # blocks reserved at the 1st, 4th and 7th encryption
    key.refresh_from_db()
    assert key.encryption_count == 9
    write(2)  # the third block still has 2 left
    key.refresh_from_db()
    assert key.encryption_count == 9
    write(1)
    key.refresh_from_db()
    assert key.encryption_count == 12


@pytest.mark.parametrize("purpose", ENCRYPTING_PURPOSES)
def test_crypto_encrypt_counts_under_every_purpose(purpose: str, settings) -> None:  # type: ignore[no-untyped-def]
    settings.NEONPRO_KEY_COUNT_BLOCK = 2
    key = _fresh_key(purpose)
    for _ in range(5):
        crypto.encrypt(b"v", context=CONTEXT, purpose=purpose)
    key.refresh_from_db()
    assert key.encryption_count == 6


@pytest.mark.parametrize("write", WRITERS.values(), ids=WRITERS.keys())
def test_no_path_encrypts_past_the_hard_limit(write: Callable[[int], None], settings) -> None:  # type: ignore[no-untyped-def]
    settings.NEONPRO_KEY_COUNT_BLOCK = 3
    key = _fresh_key("field")
    DataKey.objects.filter(pk=key.pk).update(encryption_count=HARD_LIMIT - 3)
    write(3)  # the last block inside the limit
    for _ in range(2):  # and it stays refused
        with (
            pytest.raises(EncryptionError, match=f"data key {key.pk} reached the {HARD_LIMIT} encryption limit"),
            transaction.atomic(),  # save() and bulk_create() would doom the test's transaction
        ):
            write(1)
    key.refresh_from_db()
    assert key.encryption_count == HARD_LIMIT


@pytest.mark.parametrize("purpose", ENCRYPTING_PURPOSES)
def test_crypto_encrypt_stops_at_the_hard_limit_for_every_purpose(purpose: str, settings) -> None:  # type: ignore[no-untyped-def]
    settings.NEONPRO_KEY_COUNT_BLOCK = 2
    key = _fresh_key(purpose)
    DataKey.objects.filter(pk=key.pk).update(encryption_count=HARD_LIMIT - 2)
    crypto.encrypt(b"v", context=CONTEXT, purpose=purpose)
    crypto.encrypt(b"v", context=CONTEXT, purpose=purpose)
    with pytest.raises(EncryptionError, match="encryption limit"):
        crypto.encrypt(b"v", context=CONTEXT, purpose=purpose)


def test_reencryption_stops_at_the_hard_limit_and_leaves_values_readable(settings) -> None:  # type: ignore[no-untyped-def]
    settings.NEONPRO_KEY_COUNT_BLOCK = 3
    sample = EncryptedSample.objects.create(text="before the rotation")
    key = _fresh_key("field")  # the sample is now under a decrypt-only key
    DataKey.objects.filter(pk=key.pk).update(encryption_count=HARD_LIMIT)
    with pytest.raises(EncryptionError, match="encryption limit"), transaction.atomic():
        reencrypt("field", batch=50)
    assert EncryptedSample.objects.get(pk=sample.pk).text == "before the rotation"


# -- blind indexes: the active index key, on every path that computes one --------------------


@pytest.fixture
def rotated_index() -> tuple[DataKey, DataKey]:
    """(old, new): an index key that wrote values, then a rotation to a new active one."""
    crypto.blind_index("warm-up", context=b"c")
    old = _active("index")
    new = rotate_data_key("index")
    keyring.clear()
    return old, new


def _prefix(key: DataKey) -> bytes:
    return key.pk.to_bytes(4, "big")


def test_blind_index_uses_the_active_index_key(rotated_index: tuple[DataKey, DataKey]) -> None:
    old, new = rotated_index
    token = crypto.blind_index("900550001", context=b"patients.patient.ssn\x00")
    assert len(token) == 4 + crypto.INDEX_SIZE
    assert token[:4] == _prefix(new) != _prefix(old)
    assert token == crypto.blind_index("900550001", context=b"patients.patient.ssn\x00")  # deterministic
    assert token != crypto.blind_index("900550002", context=b"patients.patient.ssn\x00")


def test_candidates_cover_every_index_key_in_use_the_active_first(rotated_index: tuple[DataKey, DataKey]) -> None:
    old, new = rotated_index
    candidates = crypto.blind_index_candidates("900550001", context="patients.patient.ssn\x00")
    assert [c[:4] for c in candidates[:2]] == [_prefix(new), _prefix(old)]
    assert candidates[0] == crypto.blind_index("900550001", context=b"patients.patient.ssn\x00")
    assert len(set(candidates)) == len(candidates)


def test_searchable_fields_index_new_values_under_the_active_key(rotated_index: tuple[DataKey, DataKey]) -> None:
    old, new = rotated_index
    sample = EncryptedSample.objects.create(email="ada@example.org")
    with connection.cursor() as cursor:
        cursor.execute("SELECT email FROM keys_tests_encryptedsample WHERE id = %s", [sample.pk])
        stored = bytes(cursor.fetchone()[0])
    assert stored[:4] == _prefix(new) != _prefix(old)
    assert EncryptedSample.objects.get(email="ADA@example.org") == sample


def test_failed_login_fingerprints_use_the_active_index_key(rotated_index: tuple[DataKey, DataKey]) -> None:
    old, new = rotated_index
    from django.test import RequestFactory

    request = RequestFactory().post("/accounts/login/")  # django-axes needs the request
    assert authenticate(request, username="nobody-such", password="wrong") is None
    event = AuditEvent.objects.filter(action="auth.login_failed").order_by("-id").first()
    assert event is not None
    assert bytes.fromhex(event.details["username_fingerprint"])[:4] == _prefix(new) != _prefix(old)


def test_blind_indexes_depend_on_the_context_and_are_keyed() -> None:
    token = crypto.blind_index("x", context=b"a")
    assert token != crypto.blind_index("x", context=b"b")
    assert token[4:] != hashlib.sha256(b"x").digest()[: crypto.INDEX_SIZE]


# -- hashes ---------------------------------------------------------------------------------


def test_chain_hash_is_sha256_of_previous_then_payload() -> None:
    assert crypto.chain_hash(b"prev", b"payload") == hashlib.sha256(b"prevpayload").digest()
    assert crypto.chain_hash(b"a", b"bc") == crypto.chain_hash(b"ab", b"c")  # the caller fixes the lengths
    assert crypto.chain_hash(bytes(32), b"x") != crypto.chain_hash(bytes(32), b"y")


def test_fingerprint_is_hex_sha256() -> None:
    assert crypto.fingerprint(b"UA/1.0") == hashlib.sha256(b"UA/1.0").hexdigest()
    assert len(crypto.fingerprint(b"")) == 64


def test_sign_all_signs_under_every_usable_key_the_active_first() -> None:
    from keys.rotation import rotate_data_key

    old_id, old_tag = crypto.sign(b"data", purpose="audit", label=b"l")
    rotate_data_key("audit")
    keyring.clear()
    signed = crypto.sign_all(b"data", purpose="audit", label=b"l")
    assert signed[0] == crypto.sign(b"data", purpose="audit", label=b"l") and signed[0][0] != old_id
    assert (old_id, old_tag) in signed[1:]
    assert all(crypto.verify_signature(b"data", tag, purpose="audit", label=b"l", key_id=k) for k, tag in signed)
