from __future__ import annotations

import logging
from typing import Any

from django.apps import AppConfig

logger = logging.getLogger(__name__)


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
        post_migrate.connect(_install_identity_keys_after_migrate, dispatch_uid="neonpro-identity-keys")


def _grant_after_migrate(*, using: str = "default", **kwargs: Any) -> None:
    """Tables a migration created get the application role's privileges straight away."""
    from neonpro.security.db import grant_runtime_privileges

    grant_runtime_privileges(using)


def _install_identity_keys_after_migrate(*, sender: Any, using: str = "default", **kwargs: Any) -> None:
    """The owner (who runs migrate) puts the identity signing keys where only it can read them.

    Without the master key (or the keys tables) it says so and leaves the database as it is:
    the app then signs nothing the database accepts, so every identity sees no rows until
    ``manage.py db identity-keys`` runs.
    """
    from django.db import connections, transaction

    from keys.exceptions import KeysError
    from neonpro.security import identity

    connection = connections[using]
    # post_migrate comes once per app with models (this one has none): act once, for keys.
    if sender.label != "keys" or connection.vendor != "postgresql":
        return
    try:
        with transaction.atomic(using=using), connection.cursor() as cursor:
            if not identity.installed(cursor):
                return
            installed = identity.install_identity_keys(cursor)
    except KeysError as error:
        logger.warning("identity signing keys not installed (%s): run `manage.py db identity-keys`", error)
        return
    logger.info("identity signing keys installed: %s", ", ".join(map(str, installed)))
