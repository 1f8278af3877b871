"""A PKCS#11 master key is identified by its key material, not its label (issue 18 item 6).

Real SoftHSM2 token: the master key is deleted and another created under the same label, as
the old error message suggested; start-up must refuse it."""

from __future__ import annotations

from typing import Any

import pytest
from pkcs11 import ObjectClass

from keys.exceptions import MasterKeyError
from tests.keys.softhsm import SoftHsm, new_label

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("system")]


@pytest.fixture
def hsm_label(settings: Any, hsm: SoftHsm) -> str:
    """A fresh master key in the token, configured as current (local still unwraps as fallback)."""
    from keys.providers import reset_provider

    label = new_label("kek")
    hsm.provider().create_key(label=label)
    settings.NEONPRO_KEY_PROVIDER = "pkcs11"
    settings.NEONPRO_KEY_PROVIDER_FALLBACKS = ["local"]
    settings.NEONPRO_PKCS11_LIB, settings.NEONPRO_PKCS11_TOKEN = hsm.lib, hsm.token
    settings.NEONPRO_PKCS11_PIN, settings.NEONPRO_PKCS11_KEY_LABEL = hsm.pin, label
    reset_provider()
    return label


def _replace(hsm: SoftHsm, label: str) -> None:
    with hsm.session(rw=True) as session:
        session.get_key(object_class=ObjectClass.SECRET_KEY, label=label).destroy()
    hsm.provider(key_label=label).create_key(label=label)


def _errors() -> list[Any]:
    from keys.checks import check_master_key

    return check_master_key(databases=["default"])


def test_a_key_replaced_under_the_same_label_is_refused_at_start_up(hsm: SoftHsm, hsm_label: str) -> None:
    from keys.models import MasterKeyCheck
    from keys.services import create_data_key

    datakey = create_data_key("file", activate=False)
    key_id = datakey.wrapping_key_id
    assert key_id.endswith(f":{hsm_label}")
    recorded = MasterKeyCheck.objects.get(key_id=key_id).check_value
    assert recorded.startswith("kcv1:") and _errors() == []

    with hsm.session(rw=True) as session:  # the key is deleted
        session.get_key(object_class=ObjectClass.SECRET_KEY, label=hsm_label).destroy()
    [missing] = _errors()
    assert missing.id == "keys.E001" and "restore that key from the HSM's backup" in missing.msg
    assert "under a NEW label" in missing.msg and "create it with" not in missing.msg

    hsm.provider(key_label=hsm_label).create_key(label=hsm_label)  # ... and "re-created"
    [replaced] = _errors()
    assert replaced.id == "keys.E003" and "not the key that wrapped the stored data keys" in replaced.msg
    assert recorded in replaced.msg and "Restore the original key" in replaced.msg
    assert MasterKeyCheck.objects.get(key_id=key_id).check_value == recorded  # never re-pinned

    with pytest.raises(MasterKeyError, match="not the key that wrapped"):  # and it wraps nothing new
        create_data_key("file", activate=False)


def test_with_no_value_recorded_a_key_that_cannot_unwrap_the_stored_keys_is_refused(
    hsm: SoftHsm, hsm_label: str
) -> None:
    """Keys wrapped before check values existed: the stored data keys themselves are the evidence."""
    from keys.models import MasterKeyCheck
    from keys.services import create_data_key

    datakey = create_data_key("file", activate=False)
    MasterKeyCheck.objects.all().delete()
    _replace(hsm, hsm_label)
    [replaced] = _errors()
    assert replaced.id == "keys.E003" and f"does not unwrap data key {datakey.pk}" in replaced.msg
    assert not MasterKeyCheck.objects.filter(key_id=datakey.wrapping_key_id).exists()


def test_with_no_value_recorded_the_right_key_is_recorded_at_start_up(hsm: SoftHsm, hsm_label: str) -> None:
    from keys.models import MasterKeyCheck
    from keys.services import create_data_key

    datakey = create_data_key("file", activate=False)
    MasterKeyCheck.objects.all().delete()
    assert _errors() == []
    assert MasterKeyCheck.objects.filter(key_id=datakey.wrapping_key_id).exists()


def test_the_check_value_identifies_the_key_material(hsm: SoftHsm) -> None:
    label = new_label("kek")
    provider = hsm.provider(key_label=label)
    provider.create_key(label=label)
    first = provider.check_value(provider.current_key_id)
    assert first == provider.check_value(provider.current_key_id)
    _replace(hsm, label)
    assert hsm.provider(key_label=label).check_value(provider.current_key_id) != first
    with pytest.raises(MasterKeyError, match="not held"):
        provider.check_value(f"pkcs11:{hsm.token}:someone-else")
