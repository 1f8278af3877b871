"""A PIN the HSM refused is not tried again: not by a rebuilt provider, not by a restarted
process (issue 18 item 9). Real SoftHSM2 token; the cross-process case runs real `manage.py
check` processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from keys.exceptions import ProviderError
from keys.providers import pkcs11 as pkcs11_module
from keys.providers.pkcs11 import Pkcs11KeyProvider
from tests.keys.softhsm import KEK_LABEL, SoftHsm

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def logins(monkeypatch: Any) -> list[str]:
    """Every C_OpenSession + C_Login attempt the provider makes (token.open with a PIN)."""
    attempts: list[str] = []
    original = Pkcs11KeyProvider._get_token

    class Counting:
        def __init__(self, token: Any) -> None:
            self._token = token

        def open(self, **kwargs: Any) -> Any:
            attempts.append("login")
            return self._token.open(**kwargs)

    monkeypatch.setattr(Pkcs11KeyProvider, "_get_token", lambda self: Counting(original(self)))
    return attempts


def _wrong_pin() -> str:
    return f"{uuid.uuid4().int % 10**8:08d}"  # a PIN no other test used: the memory is per process


def test_a_refused_pin_survives_provider_rebuilds(hsm: SoftHsm, logins: list[str]) -> None:
    wrong = _wrong_pin()
    for _ in range(3):  # three system-check runs, each building its own provider
        with pytest.raises(ProviderError, match="PIN rejected") as info:
            hsm.provider(pin=wrong).health()
        assert info.value.permanent and wrong not in str(info.value)
    assert logins == ["login"]  # tried once, by the first provider only
    hsm.provider().health()  # another (the right) PIN is tried, and works
    assert logins == ["login", "login"]


def test_a_refused_pin_is_not_tried_by_the_next_process(hsm: SoftHsm, tmp_path: Path, logins: list[str]) -> None:
    wrong = _wrong_pin()
    with pytest.raises(ProviderError, match="PIN rejected"):
        hsm.provider(pin=wrong, refusal_dir=tmp_path).health()
    marker = next(tmp_path.glob("pin-refused-*.json"))
    assert marker.stat().st_mode & 0o777 == 0o600 and wrong not in marker.read_text()
    assert json.loads(marker.read_text())["token"] == hsm.token
    pkcs11_module._REFUSED.clear()  # what a new process starts with
    with pytest.raises(ProviderError, match="not tried again by any process") as info:
        hsm.provider(pin=wrong, refusal_dir=tmp_path).health()
    assert str(marker) in str(info.value)
    assert logins == ["login"]
    pkcs11_module._REFUSED.clear()
    hsm.provider(refusal_dir=tmp_path).health()  # the right PIN: tried, works, marker removed
    assert logins == ["login", "login"] and not marker.exists()


def test_an_unreadable_marker_does_not_block_the_right_pin(hsm: SoftHsm, tmp_path: Path) -> None:
    provider = hsm.provider(refusal_dir=tmp_path)
    assert provider._refusals.marker is not None
    provider._refusals.marker.write_text("{not json")
    provider.health()


def test_restarted_processes_do_not_retry_a_refused_pin(hsm: SoftHsm, tmp_path: Path) -> None:
    wrong = _wrong_pin()
    env = {
        **os.environ,
        "NEONPRO_KEY_PROVIDER": "pkcs11",
        "NEONPRO_PKCS11_LIB": hsm.lib,
        "NEONPRO_PKCS11_TOKEN": hsm.token,
        "NEONPRO_PKCS11_KEY_LABEL": KEK_LABEL,
        "NEONPRO_PKCS11_PIN": wrong,
        "NEONPRO_PKCS11_REFUSAL_DIR": str(tmp_path),
        "SOFTHSM2_CONF": str(hsm.conf),
    }
    outputs = []
    for _ in range(2):
        run = subprocess.run(
            [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
        )
        assert run.returncode != 0 and "keys.E001" in run.stderr
        assert wrong not in run.stderr + run.stdout
        outputs.append(run.stderr)
    assert "PIN rejected" in outputs[0] and "recorded at" not in outputs[0]
    assert "not tried again by any process" in outputs[1]  # the second process never logged in
    env["NEONPRO_PKCS11_PIN"] = hsm.pin
    fixed = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert "keys.E001" not in fixed.stderr, fixed.stderr
    assert not list(tmp_path.glob("pin-refused-*.json"))
