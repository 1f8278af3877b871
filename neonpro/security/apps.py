from __future__ import annotations

from typing import Any

from django.apps import AppConfig


class SecurityConfig(AppConfig):
    name = "neonpro.security"
    label = "security"
    verbose_name = "Security"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate, pre_migrate

        from neonpro.db.limits import lift_for_migrations
        from neonpro.security import checks  # noqa: F401 - registers the runtime-role check

        post_migrate.connect(_grant_after_migrate, dispatch_uid="neonpro-grant-after-migrate")
        pre_migrate.connect(lift_for_migrations, dispatch_uid="neonpro-lift-statement-timeout")


def _grant_after_migrate(*, using: str = "default", **kwargs: Any) -> None:
    """Tables a migration created get the application role's privileges straight away."""
    from neonpro.security.db import grant_runtime_privileges

    grant_runtime_privileges(using)
