"""The ``pkcs11`` key provider: master keys (KEKs) held in a PKCS#11 token (an HSM, or SoftHSM2).

Guarantees: create_key generates an AES-256 secret key inside the token with
CKA_SENSITIVE=true, CKA_EXTRACTABLE=false, CKA_MODIFIABLE=false and only encrypt/decrypt
usage, so its value never reaches this process; a key found under a configured label that is
extractable, not sensitive or not 256 bits is refused (keys made with the HSM's own tooling are
accepted when they pass that check). Data keys are wrapped inside the token with CKM_AES_GCM
(C_Encrypt/C_Decrypt under the KEK), a fresh random 12-byte IV per wrap and the caller's context
as AAD; the stored blob is ``0x01 || IV || ciphertext || 16-byte tag``, the local provider's
layout. Key ids are ``pkcs11:<token label>:<key label>``. Only the current label and
NEONPRO_PKCS11_PREVIOUS_LABELS are held: any other id is a MasterKeyError. The PIN never appears
in a message, and once the token rejects it that PIN is not tried again (a retry loop or a
restart loop must not lock the PIN): not by this process, whatever provider instance asks
(system checks rebuild the provider), and not by another process sharing
NEONPRO_PKCS11_REFUSAL_DIR (default ``NEONPRO_DATA_DIR/pkcs11``), where a 0600 marker per
token records a salted scrypt of the refused PIN. A different PIN is tried (once); a successful
login removes the marker. Per process, each distinct PIN is tried at most once.

Settings, read when the provider is built (``from_settings``): NEONPRO_PKCS11_LIB,
NEONPRO_PKCS11_TOKEN, NEONPRO_PKCS11_PIN_FILE (a 0600 file; wins) or NEONPRO_PKCS11_PIN,
NEONPRO_PKCS11_KEY_LABEL and NEONPRO_PKCS11_PREVIOUS_LABELS.

Limitations: PKCS#11 login state belongs to the whole process, so every operation opens,
logs in and closes its own session under one process-wide lock (about a millisecond on
SoftHSM2; unwraps are rare because the keyring caches data keys); other code in the process
that keeps a session logged in to the same token makes logins fail. PKCS#11 cannot schedule a
deletion: see :meth:`Pkcs11KeyProvider.schedule_key_deletion`. SoftHSM2 reports a GCM tag
mismatch as CKR_GENERAL_ERROR, so that code (and the data-invalid codes) from C_Decrypt reads as
an authentication failure even if the device caused it. The IV comes from os.urandom: a token
that insists on generating GCM IVs itself (some FIPS modes) refuses the wrap. python-pkcs11
0.10.1 leaves a session handle open when C_Login fails (one per provider, thanks to the latch).
Labels are not unique in PKCS#11: two keys under one label are refused, never guessed between,
and create_key's duplicate check cannot see another process creating the same label at once.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
import json
import logging
import os
import stat
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pkcs11
from django.conf import settings
from pkcs11 import Attribute, GCMParams, KeyType, Mechanism, MechanismFlag, ObjectClass
from pkcs11 import exceptions as p11
from pkcs11.types import DecryptMixin, EncryptMixin

from keys.exceptions import MasterKeyError, ProviderError
from keys.providers.base import KeyProvider, MasterKeyInfo, WrappedKey
from keys.secret import reveal

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from pkcs11._pkcs11 import lib as Pkcs11Lib  # noqa: N812 - the extension names its class `lib`
    from pkcs11.types import SecretKey, Session, Token

    class _Kek(SecretKey, EncryptMixin, DecryptMixin):
        """What a usable master key is: a secret key that can encrypt and decrypt."""


DEFAULT_LIB = "/usr/lib/softhsm/libsofthsm2.so"
DEFAULT_TOKEN = "neonpro"  # noqa: S105 - a token label, not a password
DEFAULT_KEY_LABEL = "neonpro-kek"
KEY_BYTES = 32
_WRAP_VERSION = b"\x01"
_NONCE = 12
_TAG = 16
_MAX_LABEL = 64
_KEK_TEMPLATE = {
    Attribute.TOKEN: True,
    Attribute.PRIVATE: True,
    Attribute.SENSITIVE: True,
    Attribute.EXTRACTABLE: False,
    Attribute.MODIFIABLE: False,
}
_CREATE_HINT = (
    "create it with Pkcs11KeyProvider.create_key(label=...) or the HSM's own tooling (AES-256, "
    "CKA_SENSITIVE=true, CKA_EXTRACTABLE=false)"
)

# Every session of a process shares one login state: two overlapping sessions would log each
# other out, and a second C_Login fails with USER_ALREADY_LOGGED_IN before the PIN is checked.
_LOCK = threading.RLock()

# Failures a retry can cure: the device, its slot or our session went away.
_TRANSIENT: tuple[type[p11.PKCS11Error], ...] = (
    p11.DeviceError,
    p11.DeviceMemory,
    p11.DeviceRemoved,
    p11.FunctionCancelled,
    p11.FunctionFailed,
    p11.GeneralError,
    p11.HostMemory,
    p11.SessionClosed,
    p11.SessionCount,
    p11.SessionHandleInvalid,
    p11.SlotIDInvalid,
    p11.TokenNotPresent,
    p11.TokenNotRecognised,
)
# What C_Decrypt reports for a GCM tag mismatch, depending on the token.
_AUTH_FAILED: tuple[type[p11.PKCS11Error], ...] = (
    p11.EncryptedDataInvalid,
    p11.EncryptedDataLenRange,
    p11.DataInvalid,
    p11.DataLenRange,
    p11.GeneralError,
    p11.FunctionFailed,
)
_PIN_REJECTED: tuple[type[p11.PKCS11Error], ...] = (p11.PinIncorrect, p11.PinInvalid, p11.PinLenRange)


def _setting(name: str, default: Any) -> Any:
    return getattr(settings, name, default) or default


def _check_label(label: object, what: str) -> str:
    if not isinstance(label, str) or not label or label != label.strip() or len(label) > _MAX_LABEL:
        raise ProviderError(f"{what} {label!r} must be a non-empty string of at most {_MAX_LABEL} characters")
    return label


def read_pin() -> tuple[str, str]:
    """Return the user PIN and where it came from (NEONPRO_PKCS11_PIN_FILE wins)."""
    value = getattr(settings, "NEONPRO_PKCS11_PIN_FILE", None)
    if value:
        path = Path(value)
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except FileNotFoundError:
            raise ProviderError(f"PKCS#11 PIN file {path} does not exist (NEONPRO_PKCS11_PIN_FILE)") from None
        if mode & 0o077:
            raise ProviderError(
                f"PKCS#11 PIN file {path} has mode {mode:04o}; it must not be readable by group or others "
                f"(chmod 600 {path})"
            )
        pin = path.read_text().rstrip("\r\n")
        if not pin:
            raise ProviderError(f"PKCS#11 PIN file {path} is empty")
        return pin, f"NEONPRO_PKCS11_PIN_FILE {path}"
    plain = reveal(getattr(settings, "NEONPRO_PKCS11_PIN", None))
    if plain:
        return plain, "NEONPRO_PKCS11_PIN"
    raise ProviderError(
        "no PKCS#11 user PIN: point NEONPRO_PKCS11_PIN_FILE at a 0600 file holding it, or set NEONPRO_PKCS11_PIN"
    )


def provider_error(exc: p11.PKCS11Error, doing: str) -> ProviderError:
    """Translate a python-pkcs11 error; transient device and session failures may be retried."""
    detail = type(exc).__name__ + (f": {exc}" if str(exc) else "")
    if isinstance(exc, _TRANSIENT):
        return ProviderError(f"HSM unavailable while {doing} ({detail}); retry later", permanent=False)
    return ProviderError(f"HSM refused {doing} ({detail})", permanent=True)


class Pkcs11KeyProvider(KeyProvider):
    name = "pkcs11"

    def __init__(
        self,
        *,
        lib_path: str,
        token_label: str,
        pin: str,
        key_label: str,
        previous_labels: Sequence[str] = (),
        pin_source: str = "the configured PIN",
        refusal_dir: str | Path | None = None,
    ) -> None:
        if isinstance(previous_labels, str):
            raise ProviderError("NEONPRO_PKCS11_PREVIOUS_LABELS must be a list of key labels, not a string")
        self._lib_path = str(lib_path)
        self._token_label = _check_label(token_label, "PKCS#11 token label")
        self._key_label = _check_label(key_label, "PKCS#11 key label")
        labels = [self._key_label, *(_check_label(label, "PKCS#11 key label") for label in previous_labels)]
        self._held = {self._key_id(label): label for label in dict.fromkeys(labels)}
        self._pin = pin
        self._pin_source = pin_source
        self._token: Token | None = None
        self._login_refused: str | None = None
        self._refusals = _Refusals(self._lib_path, self._token_label, pin, refusal_dir)

    def __repr__(self) -> str:
        return f"<Pkcs11KeyProvider token={self._token_label!r} key={self._key_label!r}>"

    @classmethod
    def from_settings(cls) -> Pkcs11KeyProvider:
        pin, source = read_pin()
        return cls(
            lib_path=str(_setting("NEONPRO_PKCS11_LIB", DEFAULT_LIB)),
            token_label=_setting("NEONPRO_PKCS11_TOKEN", DEFAULT_TOKEN),
            pin=pin,
            key_label=_setting("NEONPRO_PKCS11_KEY_LABEL", DEFAULT_KEY_LABEL),
            previous_labels=_setting("NEONPRO_PKCS11_PREVIOUS_LABELS", ()),
            pin_source=source,
            refusal_dir=_setting("NEONPRO_PKCS11_REFUSAL_DIR", Path(_setting("NEONPRO_DATA_DIR", "var")) / "pkcs11"),
        )

    def _key_id(self, label: str) -> str:
        return f"pkcs11:{self._token_label}:{label}"

    @property
    def current_key_id(self) -> str:
        return self._key_id(self._key_label)

    def holds(self, key_id: str) -> bool:
        """Whether ``key_id`` is the current or a previous label of this token (no HSM call)."""
        return key_id in self._held

    # -- the interface -------------------------------------------------------------------
    def create_key(self, *, label: str) -> str:
        """Generate a non-extractable AES-256 key in the token; refuses a label already in use."""
        _check_label(label, "PKCS#11 key label")
        key_id = self._key_id(label)
        with self._session(f"creating master key {key_id}", rw=True) as session:
            if list(session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.LABEL: label})):
                raise ProviderError(f"token {self._token_label!r} already holds a key labelled {label!r}")
            session.generate_key(
                KeyType.AES,
                KEY_BYTES * 8,
                label=label,
                store=True,
                capabilities=MechanismFlag.ENCRYPT | MechanismFlag.DECRYPT,
                template=dict(_KEK_TEMPLATE),
            )
        return key_id

    def wrap_key(self, plaintext_key: bytes, *, context: bytes) -> WrappedKey:
        nonce = os.urandom(_NONCE)
        key_id = self.current_key_id
        with self._session(f"wrapping with master key {key_id}") as session:
            kek = self._find_kek(session, self._key_label)
            sealed = kek.encrypt(
                bytes(plaintext_key), mechanism=Mechanism.AES_GCM, mechanism_param=_gcm(nonce, context)
            )
        assert isinstance(sealed, bytes)
        return WrappedKey(key_id=key_id, blob=_WRAP_VERSION + nonce + sealed)

    def unwrap_key(self, blob: bytes, *, key_id: str, context: bytes) -> bytes:
        label = self._held.get(key_id)
        if label is None:
            raise MasterKeyError(
                f"wrapped by master key {key_id}, which this provider does not hold (it holds "
                f"{', '.join(self._held)}): add its label to NEONPRO_PKCS11_PREVIOUS_LABELS or check "
                "NEONPRO_PKCS11_TOKEN"
            )
        if len(blob) < 1 + _NONCE + _TAG or blob[:1] != _WRAP_VERSION:
            raise ProviderError("wrapped key blob is malformed")
        nonce, sealed = bytes(blob[1 : 1 + _NONCE]), bytes(blob[1 + _NONCE :])
        with self._session(f"unwrapping with master key {key_id}") as session:
            kek = self._find_kek(session, label)
            try:
                plain = kek.decrypt(sealed, mechanism=Mechanism.AES_GCM, mechanism_param=_gcm(nonce, context))
            except _AUTH_FAILED:
                raise ProviderError(
                    "wrapped key failed authentication in the HSM (altered, or moved from another key row)"
                ) from None
        assert isinstance(plain, bytes)
        return plain

    def list_keys(self) -> list[MasterKeyInfo]:
        """The held keys (current label, then previous labels) present and usable in the token."""
        found = []
        with self._session("listing master keys") as session:
            for key_id, label in self._held.items():
                try:
                    self._find_kek(session, label)
                except MasterKeyError:
                    continue
                found.append(MasterKeyInfo(key_id=key_id, provider=self.name, current=label == self._key_label))
        return found

    def schedule_key_deletion(self, key_id: str, *, pending_days: int) -> dt.datetime:
        """Destroy a master key that is no longer held, now; PKCS#11 cannot defer a deletion.

        Raises ProviderError (permanent) for the current key or a previous label (stop holding
        it first), and for ``pending_days > 0``: wait out the pending period yourself, then call
        again with ``pending_days=0`` or destroy the key with the HSM's own tooling. Raises
        MasterKeyError when the id names another token or no key.
        """
        prefix = self._key_id("")
        label = key_id[len(prefix) :] if key_id.startswith(prefix) else ""
        if not label:
            raise MasterKeyError(f"{key_id} is not a key id of PKCS#11 token {self._token_label!r}")
        if key_id in self._held:
            raise ProviderError(
                f"master key {key_id} is still held (NEONPRO_PKCS11_KEY_LABEL or NEONPRO_PKCS11_PREVIOUS_LABELS) "
                "and may wrap data keys; rotate away from it and remove its label first"
            )
        if pending_days != 0:
            raise ProviderError(
                f"PKCS#11 tokens cannot schedule a deletion ({pending_days} days requested): after the pending "
                f"period call again with pending_days=0, or destroy {label!r} with the HSM's own tooling"
            )
        with self._session(f"destroying master key {key_id}", rw=True) as session:
            try:
                session.get_key(object_class=ObjectClass.SECRET_KEY, label=label).destroy()
            except p11.NoSuchKey:
                raise MasterKeyError(f"token {self._token_label!r} holds no key labelled {label!r}") from None
            except p11.MultipleObjectsReturned:
                raise ProviderError(f"token {self._token_label!r} holds several keys labelled {label!r}") from None
        return dt.datetime.now(tz=dt.UTC)

    def health(self) -> None:
        """Log in to the token and find a usable current master key."""
        with self._session("checking health") as session:
            self._find_kek(session, self._key_label)

    # -- sessions ------------------------------------------------------------------------
    @contextlib.contextmanager
    def _session(self, doing: str, *, rw: bool = False) -> Iterator[Session]:
        with _LOCK:
            session = self._login(rw=rw)
            try:
                yield session
            except p11.PKCS11Error as exc:
                error = provider_error(exc, doing)
                if not error.permanent:
                    self._token = None
                raise error from None
            finally:
                try:
                    session.close()
                except p11.PKCS11Error:
                    self._token = None

    def _login(self, *, rw: bool) -> Session:
        if self._login_refused is None:
            self._login_refused = self._refusals.known()
        if self._login_refused:
            raise ProviderError(self._login_refused, permanent=True)
        token = self._get_token()
        where = f"PKCS#11 token {self._token_label!r}"
        try:
            session = token.open(rw=rw, user_pin=self._pin)
        except (p11.UserAlreadyLoggedIn, p11.AnotherUserAlreadyLoggedIn):
            raise ProviderError(
                f"another session of this process is logged in to {where}; the PKCS#11 provider must be its only user",
                permanent=False,
            ) from None
        except p11.PKCS11Error as exc:
            refused = _login_refusal(exc, where, self._pin_source)
            if refused is None:
                error = provider_error(exc, f"logging in to {where}")
                if not error.permanent:
                    self._token = None
                raise error from None
            self._login_refused = self._refusals.remember(refused)
            raise ProviderError(self._login_refused, permanent=True) from None
        self._refusals.accepted()
        return session

    def _get_token(self) -> Token:
        if self._token is None:
            lib = self._load_lib()
            try:
                self._token = lib.get_token(token_label=self._token_label)
            except p11.NoSuchToken:
                present = sorted(token.label for token in lib.get_tokens())
                raise ProviderError(
                    f"no PKCS#11 token labelled {self._token_label!r} in {self._lib_path} (tokens present: "
                    f"{', '.join(map(repr, present)) or 'none'}); check NEONPRO_PKCS11_TOKEN"
                ) from None
            except p11.MultipleTokensReturned:
                raise ProviderError(f"several PKCS#11 tokens are labelled {self._token_label!r}") from None
            except p11.PKCS11Error as exc:
                raise provider_error(exc, f"looking up PKCS#11 token {self._token_label!r}") from None
        return self._token

    def _load_lib(self) -> Pkcs11Lib:
        path = self._lib_path
        if not os.path.isfile(path):
            raise ProviderError(f"PKCS#11 library {path} does not exist; install it or set NEONPRO_PKCS11_LIB")
        try:
            return pkcs11.lib(path)
        except p11.PKCS11Error as exc:
            raise ProviderError(
                f"cannot load PKCS#11 library {path} ({type(exc).__name__}: {exc}); for SoftHSM2 check SOFTHSM2_CONF"
            ) from None

    def _find_kek(self, session: Session, label: str) -> _Kek:
        where = f"master key {label!r} in PKCS#11 token {self._token_label!r}"
        try:
            key = session.get_key(object_class=ObjectClass.SECRET_KEY, key_type=KeyType.AES, label=label)
        except p11.NoSuchKey:
            raise MasterKeyError(f"no {where}: {_CREATE_HINT}, or fix NEONPRO_PKCS11_KEY_LABEL") from None
        except p11.MultipleObjectsReturned:
            raise MasterKeyError(f"{where} is ambiguous: several AES keys carry that label") from None
        if key[Attribute.EXTRACTABLE] or not key[Attribute.SENSITIVE] or key[Attribute.VALUE_LEN] != KEY_BYTES:
            raise MasterKeyError(f"refusing {where}: it must be a sensitive, non-extractable AES-256 key")
        # python-pkcs11 mixes in the operations the key's CKA_ENCRYPT/CKA_DECRYPT allow.
        if not (isinstance(key, EncryptMixin) and isinstance(key, DecryptMixin)):
            raise MasterKeyError(f"refusing {where}: it must allow encryption and decryption")
        return cast("_Kek", key)


# A PIN the token refused is never tried again by this process (whatever provider instance
# asks: system checks and settings changes rebuild providers), nor by another process that
# shares the refusal directory. Keyed by library, token label and PIN: a different PIN is tried.
_REFUSED: dict[str, str] = {}
_REFUSED_LOCK = threading.Lock()
_PROCESS_SALT = os.urandom(32)


class _Refusals:
    """Remembered PIN refusals: per process (in memory) and across processes (a 0600 marker
    file per token in ``refusal_dir`` holding a salted scrypt of the refused PIN, never the PIN;
    it sits beside the PIN file's own protection level, readable only by the service account)."""

    def __init__(self, lib: str, token: str, pin: str, directory: str | Path | None) -> None:
        self._token = token
        self._pin = pin.encode()
        self._key = hmac.new(_PROCESS_SALT, b"\0".join([lib.encode(), token.encode(), self._pin]), "sha256").hexdigest()
        name = hashlib.sha256(b"\0".join([lib.encode(), token.encode()])).hexdigest()[:24]
        self.marker = Path(directory) / f"pin-refused-{name}.json" if directory else None
        self._marker_checked = False
        self._accepted = False

    def known(self) -> str | None:
        """The refusal already recorded for this PIN (by this process or another), if any."""
        with _REFUSED_LOCK:
            refused = _REFUSED.get(self._key)
        if refused is not None or self.marker is None or self._marker_checked:
            return refused
        self._marker_checked = True
        record = self._read()
        if record is None or not hmac.compare_digest(record.get("fingerprint", ""), self._scrypt(record)):
            return None
        refused = (
            f"{record.get('reason', 'PIN rejected')} (recorded at {record.get('at', '?')} in {self.marker}: this PIN "
            "is not tried again by any process; configure the right PIN, or delete that file if the token's PIN "
            "was reset to this one)"
        )
        with _REFUSED_LOCK:
            _REFUSED[self._key] = refused
        return refused

    def remember(self, refused: str) -> str:
        with _REFUSED_LOCK:
            _REFUSED[self._key] = refused
        if self.marker is not None:
            salt = os.urandom(16).hex()
            record = {"token": self._token, "salt": salt, "at": dt.datetime.now(tz=dt.UTC).isoformat(timespec="seconds")}
            record |= {"reason": refused, "fingerprint": self._scrypt(record)}
            try:
                self.marker.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                temporary = self.marker.with_suffix(f".{os.getpid()}.tmp")
                fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w") as fh:
                    json.dump(record, fh)
                os.replace(temporary, self.marker)
            except OSError as exc:
                logger.warning("cannot record the PKCS#11 PIN refusal in %s (%s)", self.marker, exc.strerror)
        return refused

    def accepted(self) -> None:
        """The PIN worked: a marker left by another (refused) PIN no longer applies."""
        if self.marker is not None and not self._accepted:
            self._accepted = True
            with contextlib.suppress(OSError):
                self.marker.unlink()

    def _read(self) -> dict[str, str] | None:
        assert self.marker is not None
        try:
            data = json.loads(self.marker.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            # An unreadable marker must not stop the login the operator asked for: tried once.
            logger.warning("ignoring the unreadable PKCS#11 refusal marker %s", self.marker)
            return None
        return data if isinstance(data, dict) else None

    def _scrypt(self, record: dict[str, str]) -> str:
        try:
            salt = bytes.fromhex(str(record.get("salt", "")))
        except ValueError:
            return ""
        return hashlib.scrypt(self._pin, salt=salt + self._token.encode(), n=2**14, r=8, p=1).hex()


def _login_refusal(exc: p11.PKCS11Error, where: str, pin_source: str) -> str | None:
    """The message for a login failure that retrying cannot cure (and could make worse)."""
    if isinstance(exc, _PIN_REJECTED):
        return (
            f"PIN rejected by {where} (from {pin_source}); this PIN is not tried again by this process, nor by "
            "any process sharing NEONPRO_PKCS11_REFUSAL_DIR, so that retries and restarts cannot lock the PIN"
        )
    if isinstance(exc, p11.PinExpired):
        return f"the user PIN of {where} has expired; set a new one with the HSM's tooling"
    if isinstance(exc, p11.PinLocked):
        return f"the user PIN of {where} is locked (too many wrong PINs); the SO must unlock it"
    if isinstance(exc, p11.UserPinNotInitialized):
        return f"{where} has no user PIN yet; initialise it with the HSM's tooling"
    return None


def _gcm(nonce: bytes, context: bytes) -> GCMParams:
    return GCMParams(nonce, bytes(context) or None, _TAG * 8)
