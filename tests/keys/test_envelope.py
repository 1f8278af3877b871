"""Envelope v1: known answers, round trips, and one failure per kind of tampering."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given
from hypothesis import strategies as st

from keys import envelope
from keys.exceptions import (
    AuthenticationError,
    DecryptionError,
    TruncatedError,
    UnsupportedVersionError,
)

VECTORS = json.loads((Path(__file__).parent / "vectors" / "envelope_v1.json").read_text())["vectors"]
AEAD = AESGCM(bytes(range(32)))


def _open(aead: AESGCM, token: bytes, context: bytes) -> bytes:
    return envelope.open_sealed(aead, token, context, envelope.read_key_id(token))


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_known_answer_vectors_decrypt(vector: dict[str, str]) -> None:
    aead = AESGCM(bytes.fromhex(vector["key"]))
    token = bytes.fromhex(vector["token"])
    assert envelope.read_key_id(token) == vector["key_id"]
    assert _open(aead, token, bytes.fromhex(vector["context"])) == bytes.fromhex(vector["plaintext"])


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_known_answer_vectors_encrypt(vector: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(envelope, "_urandom", lambda n: bytes.fromhex(vector["nonce"]))
    aead = AESGCM(bytes.fromhex(vector["key"]))
    header = envelope.header_for(int(vector["key_id"]))
    token = envelope.seal(aead, header, bytes.fromhex(vector["plaintext"]), bytes.fromhex(vector["context"]))
    assert token == bytes.fromhex(vector["token"])


@given(plaintext=st.binary(max_size=4096), context=st.binary(max_size=200), key_id=st.integers(1, 2**32 - 1))
def test_round_trip(plaintext: bytes, context: bytes, key_id: int) -> None:
    token = envelope.seal(AEAD, envelope.header_for(key_id), plaintext, context)
    assert len(token) == envelope.OVERHEAD + len(plaintext)
    assert envelope.read_key_id(token) == key_id
    assert _open(AEAD, token, context) == plaintext


@given(plaintext=st.binary(min_size=1, max_size=64))
def test_nonces_are_fresh(plaintext: bytes) -> None:
    header = envelope.header_for(1)
    first = envelope.seal(AEAD, header, plaintext, b"ctx")
    second = envelope.seal(AEAD, header, plaintext, b"ctx")
    assert first[5:17] != second[5:17]
    assert first != second


@given(plaintext=st.binary(max_size=64), other=st.binary(min_size=1, max_size=64))
def test_wrong_context_fails(plaintext: bytes, other: bytes) -> None:
    token = envelope.seal(AEAD, envelope.header_for(1), plaintext, b"patients.patient.ssn\x00" + bytes(16))
    with pytest.raises(AuthenticationError):
        _open(AEAD, token, b"patients.patient.ssn\x00" + bytes(15) + other[:1] + b"x")


def test_every_flipped_byte_is_detected() -> None:
    context = b"patients.patient.full_name\x00" + os.urandom(16)
    token = envelope.seal(AEAD, envelope.header_for(1), b"Jane Q. Public", context)
    for position in range(len(token)):
        for bit in (0x01, 0x80):
            tampered = bytearray(token)
            tampered[position] ^= bit
            with pytest.raises(DecryptionError):
                _open(AEAD, bytes(tampered), context)


def test_flipped_version_byte_names_the_version() -> None:
    token = bytearray(envelope.seal(AEAD, envelope.header_for(1), b"x", b""))
    token[0] = 2
    with pytest.raises(UnsupportedVersionError, match="version 2"):
        envelope.read_key_id(bytes(token))


def test_every_truncation_is_detected() -> None:
    token = envelope.seal(AEAD, envelope.header_for(1), b"a longer plaintext value", b"ctx")
    for length in range(len(token)):
        with pytest.raises(DecryptionError) as info:
            _open(AEAD, token[:length], b"ctx")
        if length < envelope.OVERHEAD:
            assert isinstance(info.value, TruncatedError)
        else:
            assert isinstance(info.value, AuthenticationError)


def test_appended_bytes_are_detected() -> None:
    token = envelope.seal(AEAD, envelope.header_for(1), b"value", b"ctx")
    with pytest.raises(AuthenticationError):
        _open(AEAD, token + b"\x00", b"ctx")


def test_header_rejects_key_ids_that_do_not_fit() -> None:
    for bad in (0, -1, 2**32):
        with pytest.raises(ValueError, match="does not fit"):
            envelope.header_for(bad)


def test_errors_never_contain_plaintext() -> None:
    secret = b"123-45-6789 Jane Q. Public"
    token = bytearray(envelope.seal(AEAD, envelope.header_for(3), secret, b"ctx"))
    token[-1] ^= 1
    with pytest.raises(DecryptionError) as info:
        _open(AEAD, bytes(token), b"ctx")
    assert "123-45" not in str(info.value) and "Jane" not in str(info.value)
    assert "data key 3" in str(info.value)


def test_failure_messages_say_what_failed_and_nothing_else() -> None:
    with pytest.raises(TruncatedError) as short:
        envelope.read_key_id(b"\x01\x00")
    assert str(short.value) == "cannot decrypt: value is 2 bytes, shorter than the 33-byte minimum"
    assert short.value.key_id is None
    token = bytearray(envelope.seal(AEAD, envelope.header_for(7), b"x", b"ctx"))
    token[-1] ^= 1
    with pytest.raises(AuthenticationError) as forged:
        _open(AEAD, bytes(token), b"ctx")
    assert str(forged.value) == (
        "cannot decrypt: authentication failed: the value was altered, truncated, or moved from another row or "
        "column (data key 7)"
    )
    token[0] = 9
    with pytest.raises(UnsupportedVersionError) as version:
        envelope.read_key_id(bytes(token))
    assert str(version.value) == "cannot decrypt: unsupported envelope version 9"
