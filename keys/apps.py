from __future__ import annotations

from typing import Any

from django.apps import AppConfig


class KeysConfig(AppConfig):
    name = "keys"
    verbose_name = "Encryption keys"
    default_auto_field = "django.db.models.AutoField"

    def ready(self) -> None:
        from django.core.signals import setting_changed

        from keys import checks  # noqa: F401 - registers system checks

        setting_changed.connect(_reset_on_setting_change)


def _reset_on_setting_change(*, setting: str, **kwargs: Any) -> None:
    if setting.startswith("NEONPRO_KEY") or setting.startswith("NEONPRO_MASTER") or setting == "NEONPRO_DATA_DIR":
        from keys.keyring import keyring
        from keys.providers import reset_provider

        reset_provider()
        keyring.clear()
