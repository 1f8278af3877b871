"""The local key provider: key validation, key files, wrapping bound to its context."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from keys.exceptions import MasterKeyError, ProviderError
from keys.providers.local import (
    LocalKeyProvider,
    decode_master_key,
    generate_master_key,
    read_key_file,
    write_key_file,
)


def test_accepts_32_random_bytes() -> None:
    key = os.urandom(32)
    assert decode_master_key(base64.b64encode(key).decode(), source="test") == key


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (os.urandom(16), "holds 16 bytes"),
        (os.urandom(33), "holds 33 bytes"),
        (bytes(32), "too few distinct bytes"),
        (b"ab" * 16, "too few distinct bytes"),
        (b"correct horse battery staple 123", "printable text"),
    ],
)
def test_refuses_keys_that_are_not_32_random_bytes(raw: bytes, message: str) -> None:
    with pytest.raises(MasterKeyError, match=message):
        decode_master_key(base64.b64encode(raw).decode(), source="NEONPRO_MASTER_KEY")


def test_refuses_bad_base64() -> None:
    with pytest.raises(MasterKeyError, match="not valid base64"):
        decode_master_key("not base64 at all!", source="NEONPRO_MASTER_KEY")


def test_key_file_is_created_0600_and_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "master.key"
    key = os.urandom(32)
    write_key_file(path, key)
    assert path.stat().st_mode & 0o777 == 0o600
    assert read_key_file(path) == key
    with pytest.raises(FileExistsError):
        write_key_file(path, os.urandom(32))


def test_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    write_key_file(path, os.urandom(32))
    path.chmod(0o644)
    with pytest.raises(MasterKeyError, match="chmod 600"):
        read_key_file(path)


def test_missing_key_file_says_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(MasterKeyError, match="NEONPRO_MASTER_KEY"):
        read_key_file(tmp_path / "absent.key")


def test_wrap_unwrap_binds_context_and_key_id() -> None:
    provider = LocalKeyProvider(os.urandom(32))
    wrapped = provider.wrap_key(b"k" * 32, context=b"neonpro.datakey.v1|1|field")
    assert wrapped.key_id == provider.current_key_id
    assert b"k" * 32 not in wrapped.blob
    assert provider.unwrap_key(wrapped.blob, key_id=wrapped.key_id, context=b"neonpro.datakey.v1|1|field") == b"k" * 32
    with pytest.raises(ProviderError, match="failed authentication"):
        provider.unwrap_key(wrapped.blob, key_id=wrapped.key_id, context=b"neonpro.datakey.v1|2|field")


def test_unwrap_with_another_master_key_names_both_ids() -> None:
    first, second = LocalKeyProvider(os.urandom(32)), LocalKeyProvider(os.urandom(32))
    wrapped = first.wrap_key(os.urandom(32), context=b"c")
    with pytest.raises(MasterKeyError) as info:
        second.unwrap_key(wrapped.blob, key_id=wrapped.key_id, context=b"c")
    assert first.current_key_id in str(info.value) and second.current_key_id in str(info.value)


def test_fingerprint_is_stable_and_reveals_nothing() -> None:
    key = os.urandom(32)
    assert LocalKeyProvider(key).current_key_id == LocalKeyProvider(key).current_key_id
    assert key.hex()[:16] not in LocalKeyProvider(key).current_key_id
    assert LocalKeyProvider(key).list_keys()[0].current


# -- the key file is checked as OpenSSH checks a private key -----------------------------------


def _key_file(directory: Path) -> Path:
    directory.mkdir(mode=0o700, exist_ok=True)
    path = directory / "master.key"
    write_key_file(path, generate_master_key())
    return path


def test_a_key_in_a_private_directory_is_read(tmp_path: Path) -> None:
    path = _key_file(tmp_path / "keys")

    assert len(read_key_file(path)) == 32


def test_a_symbolic_link_to_the_key_is_refused(tmp_path: Path) -> None:
    target = _key_file(tmp_path / "keys")
    link = tmp_path / "keys" / "link.key"
    link.symlink_to(target)

    with pytest.raises(MasterKeyError, match="symbolic link"):
        read_key_file(link)


def test_a_key_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    path = _key_file(tmp_path / "keys")
    os.chown(path, 65534, 65534)

    with pytest.raises(MasterKeyError, match="owned by uid 65534"):
        read_key_file(path)


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o722])
def test_a_directory_others_could_write_to_is_refused(tmp_path: Path, mode: int) -> None:
    path = _key_file(tmp_path / "keys")
    (tmp_path / "keys").chmod(mode)

    with pytest.raises(MasterKeyError, match="could replace the key"):
        read_key_file(path)


def test_a_sticky_shared_directory_above_is_accepted(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)  # like /tmp: others may write, but not rename or delete our entries
    path = _key_file(shared / "keys")

    assert len(read_key_file(path)) == 32


def test_a_directory_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    path = _key_file(tmp_path / "keys")
    os.chown(tmp_path / "keys", 65534, 65534)

    with pytest.raises(MasterKeyError, match="owned by uid 65534"):
        read_key_file(path)


def test_a_key_path_that_is_not_a_regular_file_is_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "master.key"
    os.mkfifo(fifo, 0o600)

    with pytest.raises(MasterKeyError, match="not a regular file"):
        read_key_file(fifo)
