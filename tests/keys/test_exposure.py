"""Secrets never shown: diffsettings, the DEBUG error page, repr (issue 18 item 10)."""

from __future__ import annotations

import base64
import html
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from django.http import HttpRequest, HttpResponse
from django.test import Client
from django.urls import path

from keys.secret import Secret, reveal

ROOT = Path(__file__).resolve().parents[2]
PIN = f"pin-{uuid.uuid4().hex[:12]}"  # made at run time: the error page shows source lines too


def _encrypt_view(request: HttpRequest) -> HttpResponse:
    from keys import crypto

    crypto.encrypt(b"probe", context=b"tests.exposure")
    return HttpResponse("ok")


urlpatterns = [path("encrypt/", _encrypt_view)]


def test_index_key_repr_hides_the_key() -> None:
    from keys.keyring import IndexKey

    secret = os.urandom(32)
    shown = repr(IndexKey(3, (3).to_bytes(4, "big"), secret)) + str([IndexKey(3, b"\0\0\0\3", secret)])
    assert repr(secret) not in shown and secret.hex() not in shown
    assert "key_id=3" in shown and "secret" not in shown


@pytest.mark.django_db
@pytest.mark.usefixtures("system")
def test_index_keys_from_the_keyring_do_not_print_their_secret() -> None:
    from keys.keyring import _unwrap, keyring
    from keys.models import DataKey

    keys = keyring.index_keys()
    secret = _unwrap(DataKey.objects.get(pk=keys[0].key_id))
    assert repr(secret) not in repr(keys) and secret.hex() not in repr(keys)


def test_secret_setting_never_shows_itself() -> None:
    secret = Secret(PIN)
    assert PIN not in repr(secret) and PIN not in str(secret) and PIN not in f"{secret}" and PIN not in repr([secret])
    assert reveal(secret) == PIN and reveal("plain") == "plain" and reveal(None) is None and reveal("") is None
    assert secret == Secret(PIN) and secret != PIN and hash(secret) == hash(Secret(PIN)) and bool(secret)
    import copy
    import pickle

    assert copy.deepcopy(secret) is secret and copy.copy(secret) is secret
    with pytest.raises(TypeError):
        pickle.dumps(secret)


def test_diffsettings_masks_the_pin_and_the_master_key(tmp_path: Path) -> None:
    master = base64.b64encode(os.urandom(32)).decode()
    env = {**os.environ, "NEONPRO_PKCS11_PIN": PIN, "NEONPRO_MASTER_KEY": master, "DJANGO_SETTINGS_MODULE": ""}
    env.pop("DJANGO_SETTINGS_MODULE")
    out = subprocess.run(
        [sys.executable, "manage.py", "diffsettings", "--all"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert "NEONPRO_PKCS11_PIN = <secret>" in out and "NEONPRO_MASTER_KEY = <secret>" in out
    assert PIN not in out and master not in out


@pytest.mark.django_db
@pytest.mark.usefixtures("system")
@pytest.mark.parametrize("pin", [PIN, Secret(PIN)], ids=["plain", "wrapped"])
def test_debug_error_page_shows_neither_pin_nor_data_key(settings: Any, monkeypatch: Any, pin: Any) -> None:
    """The DEBUG page of a request that failed inside Keyring._load_active, after the unwrap."""
    from keys import keyring as keyring_module
    from keys.keyring import _unwrap, ensure_active_datakey

    secret = _unwrap(ensure_active_datakey("field"))
    keyring_module.keyring.clear()

    def failing_reservation(key_id: int, purpose: str) -> int:
        raise RuntimeError("reservation failed")

    monkeypatch.setattr(keyring_module, "reserve_encryptions", failing_reservation)
    settings.DEBUG = True
    settings.ROOT_URLCONF = __name__
    settings.NEONPRO_PKCS11_PIN = pin
    settings.ALLOWED_HOSTS = ["testserver"]
    response = Client(raise_request_exception=False).get("/encrypt/", secure=True)
    assert response.status_code == 500
    page = html.unescape(response.content.decode())
    assert "_load_active" in page and "reservation failed" in page  # the technical page, with frames
    assert "NEONPRO_PKCS11_PIN" in page
    assert PIN not in page
    for shown in (repr(secret), secret.hex(), base64.b64encode(secret).decode(), str(list(secret))):
        assert shown not in page
    # pprint breaks long bytes over lines: read the variable's cell itself.
    cells = re.findall(r"<td>secret</td>\s*<td class=\"code\"><pre>(.*?)</pre>", page, flags=re.S)
    assert cells and all(cell.strip() == "'********************'" for cell in cells), cells
