from __future__ import annotations

from typing import Any

from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "neonpro.accounts"
    label = "accounts"
    verbose_name = "Accounts"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from neonpro.accounts import signals  # noqa: F401 - every account change is audited
        from neonpro.accounts.signin_events import install  # every sign-in event too; the admin requires OTP

        install()

        post_migrate.connect(_administrators_group, dispatch_uid="neonpro-administrators-group")


def _administrators_group(*, using: str = "default", **kwargs: Any) -> None:
    """The permissions a deployment's administrators get (idempotent, after every migrate)."""
    from neonpro.accounts.services import ensure_administrators_group, ensure_privacy_officers_group

    ensure_administrators_group(using=using)
    ensure_privacy_officers_group(using=using)
