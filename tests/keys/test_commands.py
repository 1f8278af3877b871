"""``manage.py keys ...`` and the master-key system checks."""

from __future__ import annotations

import base64
import os
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError, SystemCheckError

from keys.checks import check_master_key
from keys.models import DataKey

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("system")]


def _run(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("keys", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_init_creates_one_active_key_per_purpose_once() -> None:
    DataKey.objects.all().delete()  # a fresh installation (other tests may have committed keys)
    out, _ = _run("init")
    assert "field" in out and "session" in out
    assert sorted(DataKey.objects.filter(status="active").values_list("purpose", flat=True)) == sorted(
        DataKey.Purpose.values
    )
    out, _ = _run("init")
    assert "none needed" in out
    assert DataKey.objects.count() == len(DataKey.Purpose.values)


def test_status_lists_keys_without_material() -> None:
    _run("init")
    out, _ = _run("status")
    assert "PURPOSE" in out and "AES-256-GCM" in out and "HMAC-SHA256" in out
    for key in DataKey.objects.exclude(wrapped_key=b""):  # a destroyed key has no material left to leak
        assert base64.b64encode(bytes(key.wrapped_key)).decode()[:12] not in out


def test_verify_passes_with_the_right_master_key(patient_factory) -> None:  # type: ignore[no-untyped-def]
    patient_factory()
    _run("init")
    out, err = _run("verify")
    assert "All" in out and "passed" in out and not err


def test_verify_fails_with_a_wrong_master_key(patient_factory, request) -> None:  # type: ignore[no-untyped-def]
    patient_factory()
    request.getfixturevalue("other_master_key")
    with pytest.raises(CommandError, match="key check"):
        _run("verify")


def test_verify_fails_when_a_wrapped_key_was_altered() -> None:
    _run("init")
    key = DataKey.objects.get(purpose="file")
    altered = bytes(key.wrapped_key)[:-1] + bytes([key.wrapped_key[-1] ^ 1])  # always a change (not "+ 0x00")
    DataKey.objects.filter(pk=key.pk).update(wrapped_key=altered)
    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError):
        call_command("keys", "verify", stdout=out, stderr=err)
    assert f"data key {key.pk}" in err.getvalue()


def test_create_master_writes_a_0600_file_and_refuses_to_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "kek" / "master.key"
    out, _ = _run("create-master", "--path", str(target))
    assert target.stat().st_mode & 0o777 == 0o600
    assert str(target) in out
    with pytest.raises(CommandError, match="refusing to overwrite"):
        _run("create-master", "--path", str(target))
    out, _ = _run("create-master", "--path", str(target), "--if-missing")
    assert "already exists" in out


def test_check_fails_without_a_master_key(settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings.NEONPRO_MASTER_KEY = None
    settings.NEONPRO_MASTER_KEY_FILE = str(tmp_path / "missing.key")
    errors = check_master_key()
    assert [e.id for e in errors] == ["keys.E001"]
    assert "does not exist" in errors[0].msg and "NEONPRO_MASTER_KEY" in errors[0].hint


def test_check_fails_on_a_malformed_master_key(settings) -> None:  # type: ignore[no-untyped-def]
    settings.NEONPRO_MASTER_KEY = base64.b64encode(b"too short").decode()
    assert [e.id for e in check_master_key()] == ["keys.E001"]


def test_check_with_database_detects_a_wrong_master_key(patient_factory, settings) -> None:  # type: ignore[no-untyped-def]
    patient_factory()
    assert check_master_key(databases=["default"]) == []
    settings.NEONPRO_MASTER_KEY = base64.b64encode(os.urandom(32)).decode()
    errors = check_master_key(databases=["default"])
    assert [e.id for e in errors] == ["keys.E002"]
    assert "wrong or was replaced" in errors[0].msg


def test_startup_checks_stop_the_server_on_a_wrong_master_key(patient_factory, settings) -> None:  # type: ignore[no-untyped-def]
    from django.core.management.base import BaseCommand

    patient_factory()
    settings.NEONPRO_MASTER_KEY = base64.b64encode(os.urandom(32)).decode()
    with pytest.raises(SystemCheckError, match=r"keys\.E002"):
        BaseCommand().check(databases=["default"])
