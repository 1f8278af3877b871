"""`keys rotate-master` refuses to run before the configuration holds the new key (issue 18 item 7)."""

from __future__ import annotations

from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from keys.models import DataKey

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("system")]


def _wrapping() -> set[str]:
    return set(DataKey.objects.usable().values_list("wrapping_key_id", flat=True))


def test_a_missing_new_key_file_is_refused_and_not_created(patient_factory: Any, tmp_path: Path) -> None:
    patient_factory()
    before = _wrapping()
    target = tmp_path / "master-2.key"
    with pytest.raises(CommandError, match="does not exist. Create it first") as info:
        call_command("keys", "rotate-master", "--new-key-file", str(target), stdout=StringIO())
    assert "keys create-master --path" in str(info.value)
    assert not target.exists() and _wrapping() == before


def test_a_new_key_file_the_configuration_does_not_hold_is_refused(patient_factory: Any, tmp_path: Path) -> None:
    """Before step 1: every other process still runs with only the old key."""
    patient_factory()
    before = _wrapping()
    target = tmp_path / "master-2.key"
    call_command("keys", "create-master", "--path", str(target), stdout=StringIO())
    with pytest.raises(CommandError, match="configuration does not hold it") as info:
        call_command("keys", "rotate-master", "--new-key-file", str(target), stdout=StringIO())
    assert "NEONPRO_MASTER_KEY_PREVIOUS_FILES" in str(info.value)
    assert _wrapping() == before


def test_a_new_key_held_only_as_previous_is_accepted(patient_factory: Any, settings: Any, tmp_path: Path) -> None:
    """Every process can already unwrap under it, so rewrapping breaks none."""
    from keys.providers.local import LocalKeyProvider

    patient_factory()
    target = tmp_path / "master-2.key"
    call_command("keys", "create-master", "--path", str(target), stdout=StringIO())
    settings.NEONPRO_MASTER_KEY_PREVIOUS_FILES = [str(target)]
    call_command("keys", "rotate-master", "--new-key-file", str(target), stdout=StringIO())
    assert _wrapping() == {LocalKeyProvider.from_key_file(target).current_key_id}


def test_another_provider_not_configured_is_refused(patient_factory: Any) -> None:
    patient_factory()
    before = _wrapping()
    with pytest.raises(CommandError, match="refusing to rewrap under master key slow-1"):
        call_command("keys", "rotate-master", "--to", "tests.keys.slow_provider.SlowProvider", stdout=StringIO())
    assert _wrapping() == before


def test_another_provider_configured_with_the_old_one_as_fallback_is_accepted(
    patient_factory: Any, settings: Any
) -> None:
    patient_factory()
    settings.NEONPRO_KEY_PROVIDER = "tests.keys.slow_provider.SlowProvider"
    settings.NEONPRO_KEY_PROVIDER_FALLBACKS = ["local"]
    call_command("keys", "rotate-master", "--to", "tests.keys.slow_provider.SlowProvider", stdout=StringIO())
    assert _wrapping() == {"slow-1"}
