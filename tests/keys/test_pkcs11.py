"""The PKCS#11 key provider against a real SoftHSM2 token the suite creates for itself."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pkcs11
import pytest
from pkcs11 import Attribute, KeyType, MechanismFlag, ObjectClass
from pkcs11 import exceptions as p11

from keys.exceptions import MasterKeyError, ProviderError
from keys.providers.pkcs11 import Pkcs11KeyProvider, provider_error
from tests.keys.softhsm import KEK_LABEL, SoftHsm, new_label

CONTEXT = b"neonpro.datakey.v1|7|field"
DATA_KEY = bytes(range(32))


@pytest.fixture
def provider(hsm: SoftHsm) -> Pkcs11KeyProvider:
    return hsm.provider()


# -- wrapping ----------------------------------------------------------------------------
def test_wrap_unwrap_round_trip(provider: Pkcs11KeyProvider, hsm: SoftHsm) -> None:
    wrapped = provider.wrap_key(DATA_KEY, context=CONTEXT)
    assert wrapped.key_id == provider.current_key_id == f"pkcs11:{hsm.token}:{KEK_LABEL}"
    assert wrapped.blob[:1] == b"\x01" and len(wrapped.blob) == 1 + 12 + 32 + 16
    assert DATA_KEY not in wrapped.blob
    assert provider.unwrap_key(wrapped.blob, key_id=wrapped.key_id, context=CONTEXT) == DATA_KEY


def test_every_wrap_uses_a_fresh_iv(provider: Pkcs11KeyProvider) -> None:
    first, second = (provider.wrap_key(DATA_KEY, context=CONTEXT).blob for _ in range(2))
    assert first[1:13] != second[1:13] and first != second


def test_unwrap_with_another_context_fails(provider: Pkcs11KeyProvider) -> None:
    wrapped = provider.wrap_key(DATA_KEY, context=CONTEXT)
    with pytest.raises(ProviderError, match="failed authentication") as info:
        provider.unwrap_key(wrapped.blob, key_id=wrapped.key_id, context=b"neonpro.datakey.v1|8|field")
    assert info.value.permanent and not isinstance(info.value, MasterKeyError)


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (lambda blob: blob[:1] + bytes([blob[1] ^ 1]) + blob[2:], "failed authentication"),  # IV
        (lambda blob: blob[:20] + bytes([blob[20] ^ 1]) + blob[21:], "failed authentication"),  # ciphertext
        (lambda blob: blob[:-1] + bytes([blob[-1] ^ 1]), "failed authentication"),  # tag
        (lambda blob: blob[:-1], "failed authentication"),  # truncated tag
        (lambda blob: blob[:28], "malformed"),  # shorter than IV + tag
        (lambda blob: b"\x02" + blob[1:], "malformed"),  # unknown version
    ],
    ids=["iv", "ciphertext", "tag", "truncated", "too-short", "version"],
)
def test_tampered_blob_fails(provider: Pkcs11KeyProvider, tamper: Callable[[bytes], bytes], message: str) -> None:
    wrapped = provider.wrap_key(DATA_KEY, context=CONTEXT)
    with pytest.raises(ProviderError, match=message):
        provider.unwrap_key(tamper(wrapped.blob), key_id=wrapped.key_id, context=CONTEXT)


def test_concurrent_threads_share_the_token_safely(provider: Pkcs11KeyProvider) -> None:
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(10):
                wrapped = provider.wrap_key(DATA_KEY, context=CONTEXT)
                assert provider.unwrap_key(wrapped.blob, key_id=wrapped.key_id, context=CONTEXT) == DATA_KEY
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []


# -- the master key stays in the token ---------------------------------------------------
def test_master_key_is_sensitive_and_not_extractable(hsm: SoftHsm) -> None:
    with hsm.session() as session:
        kek = session.get_key(object_class=ObjectClass.SECRET_KEY, label=KEK_LABEL)
        assert kek[Attribute.KEY_TYPE] == KeyType.AES and kek[Attribute.VALUE_LEN] == 32
        assert kek[Attribute.SENSITIVE] is True and kek[Attribute.EXTRACTABLE] is False
        assert kek[Attribute.ALWAYS_SENSITIVE] is True and kek[Attribute.NEVER_EXTRACTABLE] is True
        assert kek[Attribute.TOKEN] is True and kek[Attribute.PRIVATE] is True and kek[Attribute.MODIFIABLE] is False
        assert not (kek[Attribute.WRAP] or kek[Attribute.UNWRAP] or kek[Attribute.SIGN] or kek[Attribute.DERIVE])
        with pytest.raises(p11.AttributeSensitive):
            kek[Attribute.VALUE]
        wrapper = session.generate_key(KeyType.AES, 256, capabilities=MechanismFlag.WRAP | MechanismFlag.UNWRAP)
        with pytest.raises(p11.KeyUnextractable):
            wrapper.wrap_key(kek)
        with pytest.raises(p11.PKCS11Error):  # read-only object: cannot be made extractable
            kek[Attribute.EXTRACTABLE] = True


def test_an_extractable_key_under_the_label_is_refused(hsm: SoftHsm) -> None:
    label = new_label("weak")
    with hsm.session(rw=True) as session:
        weak_template = {Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True}
        session.generate_key(KeyType.AES, 256, label=label, store=True, template=weak_template)
    weak = hsm.provider(key_label=label)
    with pytest.raises(MasterKeyError, match="sensitive, non-extractable AES-256"):
        weak.wrap_key(DATA_KEY, context=CONTEXT)
    with pytest.raises(MasterKeyError):
        weak.health()


# -- configuration errors ----------------------------------------------------------------
def test_wrong_pin_is_a_permanent_error_without_the_pin(hsm: SoftHsm) -> None:
    wrong = "7319-not-the-pin"
    provider = hsm.provider(pin=wrong)
    for _ in range(2):  # the second attempt reports the latched refusal without logging in
        with pytest.raises(ProviderError, match=r"^PIN rejected") as info:
            provider.health()
        assert info.value.permanent
        assert wrong not in str(info.value) and wrong not in repr(info.value) and wrong not in repr(provider)
        assert hsm.pin not in str(info.value)
        assert info.value.__cause__ is None and (info.value.__context__ is None or info.value.__suppress_context__)
    hsm.provider().health()  # the token's PIN is not locked


def test_unknown_token_label_is_named(hsm: SoftHsm) -> None:
    with pytest.raises(ProviderError, match="no PKCS#11 token labelled 'no-such-token'") as info:
        hsm.provider(token_label="no-such-token").health()
    assert hsm.token in str(info.value)  # lists the tokens that are present
    assert info.value.permanent


def test_missing_library_is_named(hsm: SoftHsm, tmp_path: Path) -> None:
    missing = tmp_path / "libmissing.so"
    with pytest.raises(ProviderError, match=re.escape(f"PKCS#11 library {missing} does not exist")):
        hsm.provider(lib_path=str(missing)).health()


def test_a_file_that_is_not_a_library_is_named(hsm: SoftHsm, tmp_path: Path) -> None:
    bogus = tmp_path / "libbogus.so"
    bogus.write_text("not a shared object")
    with pytest.raises(ProviderError, match=re.escape(f"cannot load PKCS#11 library {bogus}")):
        hsm.provider(lib_path=str(bogus)).health()


def test_missing_current_key_is_a_master_key_error(hsm: SoftHsm) -> None:
    label = new_label("absent")
    with pytest.raises(MasterKeyError, match=f"no master key '{label}'"):
        hsm.provider(key_label=label).health()


@pytest.mark.parametrize(
    ("exc", "permanent"),
    [
        (p11.DeviceRemoved(), False),
        (p11.DeviceError(), False),
        (p11.TokenNotPresent(), False),
        (p11.SessionHandleInvalid(), False),
        (p11.MechanismInvalid(), True),
        (p11.TemplateInconsistent(), True),
    ],
)
def test_unreachable_hsm_errors_are_retryable(exc: p11.PKCS11Error, permanent: bool) -> None:
    error = provider_error(exc, "wrapping")
    assert error.permanent is permanent
    assert type(exc).__name__ in str(error)


# -- key ids and labels ------------------------------------------------------------------
def test_unwrap_under_a_label_not_held_is_a_master_key_error(hsm: SoftHsm, provider: Pkcs11KeyProvider) -> None:
    other_label = new_label()
    other_id = provider.create_key(label=other_label)
    other = hsm.provider(key_label=other_label)
    wrapped = other.wrap_key(DATA_KEY, context=CONTEXT)
    assert wrapped.key_id == other_id
    with pytest.raises(MasterKeyError, match=f"wrapped by master key {other_id}, which this provider does not hold"):
        provider.unwrap_key(wrapped.blob, key_id=wrapped.key_id, context=CONTEXT)


def test_unwrap_with_another_tokens_key_id_is_a_master_key_error(provider: Pkcs11KeyProvider) -> None:
    wrapped = provider.wrap_key(DATA_KEY, context=CONTEXT)
    with pytest.raises(MasterKeyError, match="does not hold"):
        provider.unwrap_key(wrapped.blob, key_id=f"pkcs11:another-token:{KEK_LABEL}", context=CONTEXT)


def test_create_key_returns_its_id_and_refuses_a_duplicate_label(hsm: SoftHsm, provider: Pkcs11KeyProvider) -> None:
    label = new_label()
    assert provider.create_key(label=label) == f"pkcs11:{hsm.token}:{label}"
    assert provider.current_key_id.endswith(f":{KEK_LABEL}")  # a new key does not become current
    with pytest.raises(ProviderError, match=f"already holds a key labelled '{label}'"):
        provider.create_key(label=label)
    with pytest.raises(ProviderError, match="already holds"):
        provider.create_key(label=KEK_LABEL)
    with hsm.session() as session:
        assert len(list(session.get_objects({Attribute.LABEL: label}))) == 1


def test_list_keys_shows_held_keys_present_in_the_token(hsm: SoftHsm, provider: Pkcs11KeyProvider) -> None:
    current, previous, absent = new_label(), new_label(), new_label()
    provider.create_key(label=current)
    provider.create_key(label=previous)
    infos = hsm.provider(key_label=current, previous_labels=[previous, absent]).list_keys()
    assert [(info.key_id, info.provider, info.current) for info in infos] == [
        (f"pkcs11:{hsm.token}:{current}", "pkcs11", True),
        (f"pkcs11:{hsm.token}:{previous}", "pkcs11", False),
    ]


def test_previous_labels_still_unwrap_after_switching_the_current_label(hsm: SoftHsm) -> None:
    old, new = new_label("old"), new_label("new")
    hsm.provider().create_key(label=old)
    hsm.provider().create_key(label=new)
    wrapped = hsm.provider(key_label=old).wrap_key(DATA_KEY, context=CONTEXT)

    rotated = hsm.provider(key_label=new, previous_labels=[old])
    assert rotated.holds(wrapped.key_id) and not hsm.provider(key_label=new).holds(wrapped.key_id)
    assert rotated.unwrap_key(wrapped.blob, key_id=wrapped.key_id, context=CONTEXT) == DATA_KEY
    assert rotated.wrap_key(DATA_KEY, context=CONTEXT).key_id == f"pkcs11:{hsm.token}:{new}"
    with pytest.raises(MasterKeyError):
        hsm.provider(key_label=new).unwrap_key(wrapped.blob, key_id=wrapped.key_id, context=CONTEXT)


# -- deletion ----------------------------------------------------------------------------
def test_deletion_cannot_be_scheduled_but_an_unheld_key_can_be_destroyed_now(
    hsm: SoftHsm, provider: Pkcs11KeyProvider
) -> None:
    label = new_label("retired")
    key_id = provider.create_key(label=label)
    with pytest.raises(ProviderError, match="cannot schedule a deletion") as info:
        provider.schedule_key_deletion(key_id, pending_days=7)
    assert info.value.permanent
    with pytest.raises(ProviderError, match="still held"):
        hsm.provider(previous_labels=[label]).schedule_key_deletion(key_id, pending_days=0)
    with pytest.raises(ProviderError, match="still held"):
        provider.schedule_key_deletion(provider.current_key_id, pending_days=0)

    assert provider.schedule_key_deletion(key_id, pending_days=0).tzinfo is not None
    with hsm.session() as session:
        assert list(session.get_objects({Attribute.LABEL: label})) == []
    with pytest.raises(MasterKeyError, match="holds no key"):
        provider.schedule_key_deletion(key_id, pending_days=0)
    with pytest.raises(MasterKeyError, match="not a key id"):
        provider.schedule_key_deletion("pkcs11:another-token:x", pending_days=0)


# -- settings ----------------------------------------------------------------------------
def _pkcs11_settings(settings: Any, hsm: SoftHsm, **extra: Any) -> None:
    settings.NEONPRO_PKCS11_LIB = hsm.lib
    settings.NEONPRO_PKCS11_TOKEN = hsm.token
    settings.NEONPRO_PKCS11_KEY_LABEL = KEK_LABEL
    settings.NEONPRO_PKCS11_PIN = hsm.pin
    for name, value in extra.items():
        setattr(settings, name, value)


def test_from_settings(settings: Any, hsm: SoftHsm) -> None:
    _pkcs11_settings(settings, hsm)
    provider = Pkcs11KeyProvider.from_settings()
    provider.health()
    assert provider.current_key_id == f"pkcs11:{hsm.token}:{KEK_LABEL}"


def test_pin_file_wins_over_pin(settings: Any, hsm: SoftHsm, tmp_path: Path) -> None:
    pin_file = tmp_path / "pin"
    pin_file.write_text(hsm.pin + "\n")
    pin_file.chmod(0o600)
    _pkcs11_settings(settings, hsm, NEONPRO_PKCS11_PIN="0000-wrong", NEONPRO_PKCS11_PIN_FILE=str(pin_file))
    Pkcs11KeyProvider.from_settings().health()


def test_pin_file_readable_by_others_is_refused(settings: Any, hsm: SoftHsm, tmp_path: Path) -> None:
    pin_file = tmp_path / "pin"
    pin_file.write_text(hsm.pin)
    pin_file.chmod(0o644)
    _pkcs11_settings(settings, hsm, NEONPRO_PKCS11_PIN_FILE=str(pin_file))
    with pytest.raises(ProviderError, match="chmod 600") as info:
        Pkcs11KeyProvider.from_settings()
    assert hsm.pin not in str(info.value)


def test_no_pin_says_how_to_configure_one(settings: Any, hsm: SoftHsm) -> None:
    _pkcs11_settings(settings, hsm, NEONPRO_PKCS11_PIN=None)
    with pytest.raises(ProviderError, match="NEONPRO_PKCS11_PIN_FILE"):
        Pkcs11KeyProvider.from_settings()


def test_previous_labels_must_be_a_list(settings: Any, hsm: SoftHsm) -> None:
    _pkcs11_settings(settings, hsm, NEONPRO_PKCS11_PREVIOUS_LABELS="old-kek")
    with pytest.raises(ProviderError, match="must be a list"):
        Pkcs11KeyProvider.from_settings()


# -- the application, end to end ---------------------------------------------------------
@pytest.mark.django_db
@pytest.mark.usefixtures("system")
def test_patient_data_keys_are_wrapped_by_the_hsm(
    settings: Any, hsm: SoftHsm, patient_factory: Callable[..., Any], reinstall_identity_keys: Callable[[], None]
) -> None:
    from keys.keyring import keyring
    from keys.models import DataKey
    from keys.providers import get_provider, reset_provider
    from patients.models import Patient

    DataKey.objects.all().delete()  # keys other tests committed were wrapped by the local provider
    _pkcs11_settings(settings, hsm)
    settings.NEONPRO_KEY_PROVIDER = "pkcs11"
    reset_provider()
    keyring.clear()
    assert isinstance(get_provider(), Pkcs11KeyProvider)
    reinstall_identity_keys()

    patient = patient_factory(full_name="Hsm Canary")
    keyring.clear()
    assert Patient.objects.get(pk=patient.pk).full_name == "Hsm Canary"

    datakeys = list(DataKey.objects.all())
    assert datakeys
    for datakey in datakeys:
        assert datakey.provider == "pkcs11"
        assert datakey.wrapping_key_id == f"pkcs11:{hsm.token}:{KEK_LABEL}"
    with hsm.session() as session:  # the HSM's key, not a copy, opens them
        kek = session.get_key(object_class=ObjectClass.SECRET_KEY, label=KEK_LABEL)
        blob = bytes(datakeys[0].wrapped_key)
        params = pkcs11.GCMParams(blob[1:13], datakeys[0].wrap_context())
        assert len(kek.decrypt(blob[13:], mechanism=pkcs11.Mechanism.AES_GCM, mechanism_param=params)) == 32
