"""Per-patient keys: crypto-shredding one patient leaves everyone else readable."""

from __future__ import annotations

import uuid

import pytest

from keys.exceptions import AuthenticationError, KeysError, UnknownKeyError
from keys.models import SubjectKey
from keys.subjects import decrypt_for_subject, encrypt_for_subject, shred_subject

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("system")]


def test_shredding_one_subject_leaves_the_others_readable() -> None:
    alice, bob = uuid.uuid4(), uuid.uuid4()
    a = encrypt_for_subject(alice, b"alice x-ray", context=b"imaging.image:1")
    b = encrypt_for_subject(bob, b"bob x-ray", context=b"imaging.image:2")
    assert decrypt_for_subject(alice, a, context=b"imaging.image:1") == b"alice x-ray"
    assert shred_subject(alice) is True
    with pytest.raises(UnknownKeyError, match="crypto-shredded"):
        decrypt_for_subject(alice, a, context=b"imaging.image:1")
    assert decrypt_for_subject(bob, b, context=b"imaging.image:2") == b"bob x-ray"
    row = SubjectKey.objects.get(pk=alice)
    assert bytes(row.wrapped_key) == b"" and row.shredded_at
    with pytest.raises(KeysError, match="already destroyed"):
        shred_subject(alice)
    assert shred_subject(uuid.uuid4()) is False


def test_blobs_are_bound_to_their_subject_and_context() -> None:
    alice, bob = uuid.uuid4(), uuid.uuid4()
    encrypt_for_subject(bob, b"init", context=b"c")
    blob = encrypt_for_subject(alice, b"secret", context=b"imaging.image:1")
    with pytest.raises((AuthenticationError, UnknownKeyError)):
        decrypt_for_subject(bob, blob, context=b"imaging.image:1")
    with pytest.raises(AuthenticationError):
        decrypt_for_subject(alice, blob, context=b"imaging.image:9")


def test_subject_keys_are_stored_wrapped_only() -> None:
    subject = uuid.uuid4()
    encrypt_for_subject(subject, b"x", context=b"c")
    row = SubjectKey.objects.get(pk=subject)
    # Wrapped by its epoch's key, whose file is in turn wrapped by the master key.
    from keys.models import SubjectEpoch

    assert len(bytes(row.wrapped_key)) > 32 and row.wrapping_key_id == f"subject-epoch:{row.epoch}"
    assert SubjectEpoch.objects.get(pk=row.epoch).wrapping_key_id.startswith("local-")
