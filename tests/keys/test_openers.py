"""Every opener of ciphertext, fuzzed: for input that was never sealed, or a sealed value with
any byte changed, cut or added, it raises its documented exception and never returns data.

The openers: ``keys.crypto.decrypt``; field values as the ORM loads them (the encrypted
attribute opens them on first read), plain and searchable; per-subject blobs
(``decrypt_for_subject``, which file encryption builds on); and values imported from
django-cryptography (``djcrypto.OldKey.open``, which reports an outcome instead of raising).
Budgets are small and examples fixed (tests/conftest.py), so this takes seconds.
"""

from __future__ import annotations

import pickle
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from hypothesis import example, given, settings
from hypothesis import strategies as st

from keys import crypto, djcrypto, envelope
from keys.exceptions import DecryptionError
from keys.fields import INDEX_PREFIX_SIZE
from keys.keyring import keyring
from keys.models import DataKey
from keys.subjects import decrypt_for_subject, encrypt_for_subject
from tests.conftest import fuzz_budget
from tests.keys.sample_models import EncryptedSample

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("system")]

SECRET = "Canary Secret 900-55-0001"
CONTEXT = b"tests.openers\x00" + bytes(16)


@st.composite
def edits(draw: st.DrawFn, token: bytes) -> bytes:
    """``token`` with one kind of damage: a flipped bit, a cut, appended bytes, or a
    replaced span (header, nonce, ciphertext or tag alike)."""
    kind = draw(st.sampled_from(["flip", "cut", "append", "replace"]))
    if kind == "flip":
        position = draw(st.integers(0, len(token) - 1))
        bit = draw(st.sampled_from([1, 2, 4, 8, 16, 32, 64, 128]))
        return token[:position] + bytes([token[position] ^ bit]) + token[position + 1 :]
    if kind == "cut":
        start = draw(st.integers(0, len(token)))
        return token[:start] if draw(st.booleans()) else token[start:]
    if kind == "append":
        return token + draw(st.binary(min_size=1, max_size=32))
    start = draw(st.integers(0, len(token) - 1))
    end = draw(st.integers(start + 1, len(token)))
    return token[:start] + draw(st.binary(min_size=end - start, max_size=end - start)) + token[end:]


def envelope_shaped(key_ids: list[int]) -> st.SearchStrategy[bytes]:
    """Version-1 envelopes naming real, zero, index, unknown or extreme key ids."""
    key_id = st.sampled_from([*key_ids, 0, 1, 2**32 - 1]) | st.integers(0, 2**32 - 1)
    return st.builds(
        lambda kid, rest: bytes([envelope.VERSION]) + kid.to_bytes(4, "big") + rest,
        key_id,
        st.binary(max_size=64),
    )


def _known_key_ids() -> list[int]:
    return list(DataKey.objects.values_list("pk", flat=True))


def _never_opens(open_: Callable[[bytes], Any], token: bytes) -> None:
    with pytest.raises(DecryptionError) as info:
        open_(token)
    assert SECRET not in str(info.value) and "900-55" not in str(info.value)


def _opens_only_untouched(open_: Callable[[bytes], Any], original: bytes, candidate: bytes, plaintext: Any) -> None:
    if candidate == original:
        assert open_(candidate) == plaintext
    else:
        _never_opens(open_, candidate)


# -- keys.crypto.decrypt ----------------------------------------------------------------------


@pytest.fixture
def sealed() -> bytes:
    crypto.blind_index("warm-up", context=b"c")  # an index key exists: its id is fuzzed too
    return crypto.encrypt(SECRET.encode(), context=CONTEXT)


def _decrypt(token: bytes) -> bytes:
    return crypto.decrypt(token, context=CONTEXT)


@settings(max_examples=fuzz_budget(150))
@given(token=st.binary(max_size=100))
@example(token=b"\x01" + bytes(32))  # key id 0, the fuzz finding of issue 17
def test_decrypt_refuses_arbitrary_bytes(sealed: bytes, token: bytes) -> None:
    _never_opens(_decrypt, token)


@settings(max_examples=fuzz_budget(150))
@given(data=st.data())
def test_decrypt_refuses_envelope_shaped_bytes(sealed: bytes, data: st.DataObject) -> None:
    _never_opens(_decrypt, data.draw(envelope_shaped(_known_key_ids())))


@settings(max_examples=fuzz_budget(200))
@given(data=st.data())
def test_decrypt_opens_a_sealed_value_only_untouched(sealed: bytes, data: st.DataObject) -> None:
    _opens_only_untouched(_decrypt, sealed, data.draw(edits(sealed)), SECRET.encode())


@settings(max_examples=fuzz_budget(50))
@given(context=st.binary(max_size=40))
def test_decrypt_refuses_every_other_context(sealed: bytes, context: bytes) -> None:
    if context != CONTEXT:
        _never_opens(lambda token: crypto.decrypt(token, context=context), sealed)


# -- field values, as the ORM loads them ------------------------------------------------------

FIELDS = {"text": SECRET, "email": "canary.secret@example.org"}


@pytest.fixture
def stored() -> dict[str, Any]:
    """A saved sample: its primary key and the stored bytes of a plain and a searchable field."""
    sample = EncryptedSample.objects.create(**FIELDS)
    with connection.cursor() as cursor:
        cursor.execute("SELECT text, email FROM keys_tests_encryptedsample WHERE id = %s", [sample.pk])
        text, email = (bytes(v) for v in cursor.fetchone())
    return {"pk": sample.pk, "text": text, "email": email}


def _loader(name: str, pk: uuid.UUID, *, warm: bool = False) -> Callable[[bytes], Any]:
    """Open ``token`` as the ORM does when it loads field ``name`` of row ``pk``; with ``warm``
    the field key is already cached (the hot path), otherwise it is looked up (the slow one)."""

    def load(token: bytes) -> Any:
        keyring.clear()
        if warm:
            crypto.encrypt(b"", context=b"warm the field key cache")
        instance = EncryptedSample.from_db("default", ["id", name], [pk, token])
        return getattr(instance, name)

    return load


CACHE = pytest.mark.parametrize("warm", [False, True], ids=["cold", "warm"])


@CACHE
@pytest.mark.parametrize("name", FIELDS)
@settings(max_examples=fuzz_budget(60))
@given(token=st.binary(max_size=100))
def test_a_field_refuses_arbitrary_stored_bytes(stored: dict[str, Any], name: str, warm: bool, token: bytes) -> None:
    _never_opens(_loader(name, stored["pk"], warm=warm), token)


@CACHE
@pytest.mark.parametrize("name", FIELDS)
@settings(max_examples=fuzz_budget(60))
@given(data=st.data())
def test_a_field_refuses_envelope_shaped_bytes(
    stored: dict[str, Any], name: str, warm: bool, data: st.DataObject
) -> None:
    token = data.draw(envelope_shaped(_known_key_ids()))
    if name == "email":  # a searchable value: an index prefix, then the envelope
        token = data.draw(st.binary(min_size=INDEX_PREFIX_SIZE, max_size=INDEX_PREFIX_SIZE)) + token
    _never_opens(_loader(name, stored["pk"], warm=warm), token)


@CACHE
@pytest.mark.parametrize("name", FIELDS)
@settings(max_examples=fuzz_budget(80))
@given(data=st.data())
def test_a_field_opens_its_value_only_untouched(
    stored: dict[str, Any], name: str, warm: bool, data: st.DataObject
) -> None:
    original = stored[name]
    load = _loader(name, stored["pk"], warm=warm)
    _opens_only_untouched(load, original, data.draw(edits(original)), FIELDS[name])


@pytest.mark.parametrize("name", FIELDS)
def test_a_field_value_does_not_open_in_another_row(stored: dict[str, Any], name: str) -> None:
    _never_opens(_loader(name, uuid.uuid4()), stored[name])


# -- per-subject blobs ------------------------------------------------------------------------


@pytest.fixture
def subject_blob() -> tuple[uuid.UUID, bytes]:
    subject = uuid.uuid4()
    return subject, encrypt_for_subject(subject, SECRET.encode(), context=CONTEXT)


@settings(max_examples=fuzz_budget(100))
@given(token=st.binary(max_size=100))
def test_subject_blobs_refuse_arbitrary_bytes(subject_blob: tuple[uuid.UUID, bytes], token: bytes) -> None:
    subject, _ = subject_blob
    _never_opens(lambda t: decrypt_for_subject(subject, t, context=CONTEXT), token)


@settings(max_examples=fuzz_budget(150))
@given(data=st.data())
def test_a_subject_blob_opens_only_untouched(subject_blob: tuple[uuid.UUID, bytes], data: st.DataObject) -> None:
    subject, blob = subject_blob
    open_ = lambda t: decrypt_for_subject(subject, t, context=CONTEXT)  # noqa: E731
    _opens_only_untouched(open_, blob, data.draw(edits(blob)), SECRET.encode())


def test_a_subject_blob_opens_for_no_other_subject_and_no_field(subject_blob: tuple[uuid.UUID, bytes]) -> None:
    subject, blob = subject_blob
    other = uuid.uuid4()
    encrypt_for_subject(other, b"x", context=CONTEXT)
    _never_opens(lambda t: decrypt_for_subject(other, t, context=CONTEXT), blob)
    _never_opens(lambda t: decrypt_for_subject(uuid.uuid4(), t, context=CONTEXT), blob)  # a subject without a key
    _never_opens(_decrypt, blob)
    _never_opens(lambda t: decrypt_for_subject(subject, t, context=CONTEXT), crypto.encrypt(b"x", context=CONTEXT))


# -- values imported from django-cryptography ---------------------------------------------------

OLD_SECRET_KEY = "the old app's SECRET_KEY, long enough for its HMAC"


@pytest.fixture(scope="module")
def old_key() -> djcrypto.OldKey:
    return djcrypto.OldKey(OLD_SECRET_KEY)


@pytest.fixture(scope="module")
def old_token() -> bytes:
    """A token as django-cryptography's FernetBytes writes it (what the old app stored)."""
    from cryptography.hazmat.primitives import hashes
    from django_cryptography.core.signing import FernetSigner
    from django_cryptography.utils.crypto import FernetBytes, pbkdf2

    aes_key = pbkdf2(OLD_SECRET_KEY, djcrypto.DEFAULT_SALT, djcrypto.ITERATIONS, 32, hashes.SHA256())
    return bytes(FernetBytes(aes_key, FernetSigner(OLD_SECRET_KEY)).encrypt(pickle.dumps(SECRET)))


@settings(max_examples=fuzz_budget(150))
@given(token=st.binary(max_size=120))
def test_old_tokens_refuse_arbitrary_bytes(old_key: djcrypto.OldKey, token: bytes) -> None:
    outcome, value = old_key.open(token)
    assert outcome is djcrypto.Outcome.FORGED and value is None


@settings(max_examples=fuzz_budget(150))
@given(data=st.data())
def test_an_old_token_opens_only_untouched(old_key: djcrypto.OldKey, old_token: bytes, data: st.DataObject) -> None:
    assert old_key.open(old_token) == (djcrypto.Outcome.OK, SECRET)
    candidate = data.draw(edits(old_token))
    if candidate != old_token:
        assert old_key.open(candidate) == (djcrypto.Outcome.FORGED, None)
