"""The ``local`` key provider: a 32-byte master key from the environment or a 0600 file.

Guarantees: the key is exactly 32 bytes and does not look like a password or a constant
(low byte diversity, printable ASCII); a key file is refused, as OpenSSH refuses a private
key, when it is readable by group or others, is a symbolic link or not a regular file, is
owned by another user, or sits in a directory someone else could use to swap it (owned by
another user than this one or root, or writable by group or others without the sticky bit);
data keys are wrapped with AES-256-GCM under the master key with the caller's context as
AAD. The master key's id is a one-way fingerprint, so the id can be stored and logged.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import os
import stat
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from keys.conf import keys_settings
from keys.exceptions import MasterKeyError, ProviderError
from keys.providers.base import KeyProvider, MasterKeyInfo, WrappedKey

KEY_SIZE = 32
_WRAP_VERSION = b"\x01"
_NONCE = 12
_HINT = (
    "set NEONPRO_MASTER_KEY to base64 of 32 random bytes, or point NEONPRO_MASTER_KEY_FILE at a 0600 "
    "file holding one (`python manage.py keys create-master` writes one)"
)


def generate_master_key() -> bytes:
    return os.urandom(KEY_SIZE)


def validate_master_key(raw: bytes, *, source: str) -> bytes:
    """Return ``raw`` if it plausibly is 32 random bytes, else raise MasterKeyError."""
    if len(raw) != KEY_SIZE:
        raise MasterKeyError(f"{source} holds {len(raw)} bytes; the master key must be exactly {KEY_SIZE}. {_HINT}")
    if len(set(raw)) < 16:
        raise MasterKeyError(f"{source} has too few distinct bytes to be random key material. {_HINT}")
    if all(0x20 <= b < 0x7F for b in raw):
        raise MasterKeyError(f"{source} is printable text, not random key material (a password?). {_HINT}")
    return raw


def decode_master_key(text: str, *, source: str) -> bytes:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise MasterKeyError(f"{source} is not valid base64. {_HINT}") from None
    return validate_master_key(raw, source=source)


def fingerprint(key: bytes) -> str:
    """A stable, one-way id for a master key."""
    return "local-" + hmac.digest(key, b"neonpro.kek.fingerprint.v1", hashlib.sha256)[:8].hex()


def write_key_file(path: Path, key: bytes) -> None:
    """Create ``path`` (mode 0600, never overwriting) holding ``key`` in base64."""
    validate_master_key(key, source="new master key")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(base64.b64encode(key).decode("ascii") + "\n")


def read_key_file(path: Path) -> bytes:
    """The master key in ``path``, after the checks OpenSSH makes of a private key."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        raise MasterKeyError(f"no master key: {path} does not exist. {_HINT}") from None
    except OSError as exc:
        if os.path.islink(path):
            raise MasterKeyError(
                f"master key file {path} is a symbolic link; point NEONPRO_MASTER_KEY_FILE at the file itself"
            ) from None
        raise MasterKeyError(f"master key file {path} cannot be opened: {exc.strerror}") from None
    with os.fdopen(fd, "r") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise MasterKeyError(f"master key file {path} is not a regular file")
        if st.st_uid != os.geteuid():
            raise MasterKeyError(
                f"master key file {path} is owned by uid {st.st_uid}, not by this user (uid {os.geteuid()}); "
                "the key must belong to the account that runs NeonPro"
            )
        if stat.S_IMODE(st.st_mode) & 0o077:
            raise MasterKeyError(
                f"master key file {path} has mode {stat.S_IMODE(st.st_mode):04o}; it must not be readable by "
                f"group or others (chmod 600 {path})"
            )
        _check_directories(path)
        text = fh.read()
    return decode_master_key(text, source=f"master key file {path}")


def _check_directories(path: Path) -> None:
    """No directory above the key lets anyone but this user (or root) replace it."""
    directory = Path(os.path.abspath(path)).parent
    while True:
        st = directory.stat()
        if st.st_uid not in (os.geteuid(), 0):
            raise MasterKeyError(
                f"directory {directory} holding the master key is owned by uid {st.st_uid}: its owner could "
                "replace the key; keep the key under directories owned by this user or root"
            )
        if stat.S_IMODE(st.st_mode) & 0o022 and not st.st_mode & stat.S_ISVTX:
            raise MasterKeyError(
                f"directory {directory} holding the master key has mode {stat.S_IMODE(st.st_mode):04o}: group or "
                f"others could replace the key (chmod go-w {directory})"
            )
        if directory.parent == directory:
            return
        directory = directory.parent


class LocalKeyProvider(KeyProvider):
    """The current master key wraps; it and any previous keys (during a rotation) unwrap."""

    name = "local"

    def __init__(self, master_key: bytes, *, source: str = "master key", previous: list[bytes] | None = None) -> None:
        self._kek = AESGCM(validate_master_key(master_key, source=source))
        self._key_id = fingerprint(master_key)
        self._keks = {self._key_id: self._kek}
        for key in previous or []:
            self._keks.setdefault(fingerprint(key), AESGCM(validate_master_key(key, source="previous master key")))

    @classmethod
    def from_settings(cls) -> LocalKeyProvider:
        previous = [
            decode_master_key(k, source="NEONPRO_MASTER_KEY_PREVIOUS") for k in keys_settings.MASTER_KEY_PREVIOUS
        ]
        previous += [read_key_file(path) for path in keys_settings.MASTER_KEY_PREVIOUS_FILES]
        encoded = keys_settings.MASTER_KEY
        if encoded:
            key = decode_master_key(encoded, source="NEONPRO_MASTER_KEY")
            return cls(key, source="NEONPRO_MASTER_KEY", previous=previous)
        path = keys_settings.MASTER_KEY_FILE
        return cls(read_key_file(path), source=str(path), previous=previous)

    @classmethod
    def from_key_file(cls, path: Path) -> LocalKeyProvider:
        """A provider whose current key is the one in ``path`` (for rotate-master)."""
        return cls(read_key_file(path), source=str(path))

    def holds(self, key_id: str) -> bool:
        return key_id in self._keks

    @property
    def current_key_id(self) -> str:
        return self._key_id

    def create_key(self, *, label: str) -> str:
        raise ProviderError(
            "the local provider holds exactly one master key; create a new one with "
            "`python manage.py keys create-master --path NEW_FILE`",
            permanent=True,
        )

    def wrap_key(self, plaintext_key: bytes, *, context: bytes) -> WrappedKey:
        nonce = os.urandom(_NONCE)
        blob = _WRAP_VERSION + nonce + self._kek.encrypt(nonce, plaintext_key, context)
        return WrappedKey(key_id=self._key_id, blob=blob)

    def unwrap_key(self, blob: bytes, *, key_id: str, context: bytes) -> bytes:
        kek = self._keks.get(key_id)
        if kek is None:
            raise MasterKeyError(
                f"wrapped by master key {key_id}, but the configured master key is {self._key_id}: "
                "the master key is wrong or was replaced"
            )
        if len(blob) < 1 + _NONCE + 16 or blob[:1] != _WRAP_VERSION:
            raise ProviderError("wrapped key blob is malformed")
        try:
            return kek.decrypt(blob[1 : 1 + _NONCE], blob[1 + _NONCE :], context)
        except InvalidTag:
            raise ProviderError("wrapped key failed authentication (altered, or moved from another key row)") from None

    def list_keys(self) -> list[MasterKeyInfo]:
        return [MasterKeyInfo(key_id=k, provider=self.name, current=k == self._key_id) for k in self._keks]

    def schedule_key_deletion(self, key_id: str, *, pending_days: int) -> dt.datetime:
        raise ProviderError(
            "the local provider cannot delete its key file; after `keys rotate-master` remove the old file yourself",
            permanent=True,
        )
