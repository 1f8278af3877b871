"""keys.crypto.sign / verify_signature: HMAC-SHA256 under the audit and identity keys."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from keys import crypto
from keys.exceptions import KeysError, UnknownKeyError
from keys.keyring import keyring
from keys.models import DataKey
from keys.rotation import rotate_data_key

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("system")]


@pytest.mark.parametrize("purpose", ["audit", "identity"])
def test_a_signature_verifies_and_anything_else_does_not(purpose: str) -> None:
    key_id, tag = crypto.sign(b"event 1", purpose=purpose, label=b"chain")

    assert len(tag) == 32
    assert crypto.verify_signature(b"event 1", tag, purpose=purpose, label=b"chain", key_id=key_id)
    assert not crypto.verify_signature(b"event 2", tag, purpose=purpose, label=b"chain", key_id=key_id)
    assert not crypto.verify_signature(b"event 1", tag, purpose=purpose, label=b"other", key_id=key_id)
    assert not crypto.verify_signature(b"event 1", bytes(32), purpose=purpose, label=b"chain", key_id=key_id)
    assert not crypto.verify_signature(b"event 1", tag, purpose=purpose, label=b"chain", key_id=key_id + 10_000)


def test_the_signature_is_hmac_sha256_under_a_key_derived_for_the_label() -> None:
    key_id, tag = crypto.sign(b"payload", purpose="audit", label=b"chain")
    secret = next(k.secret for k in keyring.mac_keys("audit") if k.key_id == key_id)
    derived = hmac.digest(secret, b"neonpro.mac.v1\x00chain", "sha256")

    assert tag == hmac.digest(derived, b"payload", hashlib.sha256)
    assert crypto.derived_key(purpose="audit", label=b"chain", key_id=key_id) == derived
    assert tag != hmac.digest(secret, b"payload", hashlib.sha256)  # never the data key itself


def test_after_rotation_the_new_key_signs_and_the_old_one_still_verifies() -> None:
    old_id, old_tag = crypto.sign(b"before", purpose="audit", label=b"chain")

    new = rotate_data_key("audit")
    new_id, _ = crypto.sign(b"after", purpose="audit", label=b"chain")

    assert new_id == new.pk != old_id
    assert crypto.verify_signature(b"before", old_tag, purpose="audit", label=b"chain", key_id=old_id)
    assert keyring.mac_keys("audit")[0].key_id == new.pk


def test_a_destroyed_key_verifies_nothing() -> None:
    old_id, tag = crypto.sign(b"x", purpose="identity", label=b"l")
    rotate_data_key("identity")
    DataKey.objects.filter(pk=old_id).update(status=DataKey.Status.DESTROYED, wrapped_key=b"")
    keyring.clear()

    assert not crypto.verify_signature(b"x", tag, purpose="identity", label=b"l", key_id=old_id)
    with pytest.raises(KeysError, match=f"no usable identity key {old_id}"):
        crypto.derived_key(purpose="identity", label=b"l", key_id=old_id)


def test_only_mac_purposes_sign() -> None:
    with pytest.raises(KeysError, match="not a MAC purpose"):
        crypto.sign(b"x", purpose="field", label=b"l")


def test_mac_keys_never_decrypt_envelopes() -> None:
    key_id, _ = crypto.sign(b"x", purpose="audit", label=b"l")
    forged = bytes([1]) + key_id.to_bytes(4, "big") + bytes(40)

    with pytest.raises(UnknownKeyError):
        crypto.decrypt(forged, context=b"")


def test_sign_can_use_an_older_usable_key_by_id() -> None:
    old_id, _ = crypto.sign(b"x", purpose="identity", label=b"l")
    new = rotate_data_key("identity")

    assert crypto.sign(b"x", purpose="identity", label=b"l")[0] == new.pk
    key_id, tag = crypto.sign(b"x", purpose="identity", label=b"l", key_id=old_id)
    assert key_id == old_id
    assert crypto.verify_signature(b"x", tag, purpose="identity", label=b"l", key_id=old_id)
    assert not crypto.verify_signature(b"x", tag, purpose="identity", label=b"l", key_id=new.pk)
    with pytest.raises(KeysError, match=f"no usable identity key {new.pk + 10_000}"):
        crypto.sign(b"x", purpose="identity", label=b"l", key_id=new.pk + 10_000)
