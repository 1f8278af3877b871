"""ORM-level row scoping: the same rules as the PostgreSQL policies, for every database.

Models holding PHI use ``ScopedManager`` as their default manager. Its querysets are filtered
by the model's ``scope_filter(identity)`` for the identity of the current ``acting_as``
block; with no identity they are empty. PostgreSQL row-level security enforces the same
rules underneath (and holds for raw SQL); this layer keeps SQLite (the embedded mode) and
error messages consistent with it.
"""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.models import Q

from keys.bulk import EncryptedQuerySet
from neonpro.security.context import Identity, current_identity

NOTHING = Q(pk__in=[])


class ScopedQuerySet(EncryptedQuerySet):
    def visible_to(self, identity: Identity | None) -> ScopedQuerySet:
        if identity is None or identity.is_anonymous:
            return self.none()
        if identity.is_system:
            return self
        condition = self.model.scope_filter(identity)
        return self.none() if condition is NOTHING else self.filter(condition)


class ScopedManager(models.Manager[Any]):
    _queryset_class = ScopedQuerySet

    def get_queryset(self) -> ScopedQuerySet:
        return self.visible_to(current_identity())

    def visible_to(self, identity: Identity | None) -> ScopedQuerySet:
        """Rows ``identity`` may see, whoever is acting now (the ORM half of the policies)."""
        return ScopedQuerySet(self.model, using=self._db).visible_to(identity)
