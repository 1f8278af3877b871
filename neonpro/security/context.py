"""Who is acting: the identity every database transaction carries.

Guarantees:

* Work on PHI runs inside ``acting_as(identity)``: one transaction that first sets
  ``neonpro.identity`` with ``set_config(..., true)`` to a token signed for that very
  transaction (neonpro/security/identity.py) — transaction-local, so nothing survives on a
  pooled connection (safe behind a transaction-mode pooler: no session-level ``SET``), and
  useless in any other transaction even if it did.
* PostgreSQL row-level security reads the identity only through the token's verification
  (``neonpro_identity_claim``), so SQL run as the application role cannot set one of its own;
  the ORM's scoped managers read the same identity from a context variable, so SQLite (the
  embedded mode) filters the same way.
* No identity means no PHI rows (default deny), in the database and in the ORM.
* ``system_context(reason)`` is the one, explicit way to act beyond a user's rights
  (seeding, key re-encryption, registration); the caller audits it.
"""

from __future__ import annotations

import contextvars
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections, transaction

from neonpro.audit.services import SYSTEM_ACTOR_ID
from neonpro.security import scopes
from neonpro.security.identity import Binding, set_identity

ROLES = ("patient", "clinician", "admin", "agent", "system")
# The attribute of an agent's User naming the scopes its credential carries (vocabulary form).
AGENT_SCOPES = "agent_scopes"
SYSTEM_ACTOR = SYSTEM_ACTOR_ID


@dataclass(frozen=True)
class Identity:
    user_id: uuid.UUID | None
    role: str
    patient_id: uuid.UUID | None = None
    scopes: tuple[str, ...] = ()

    @property
    def is_system(self) -> bool:
        return self.role == "system"

    @property
    def is_anonymous(self) -> bool:
        return self.user_id is None and not self.is_system


ANONYMOUS = Identity(user_id=None, role="")
SYSTEM = Identity(user_id=SYSTEM_ACTOR, role="system")

_current: contextvars.ContextVar[Identity | None] = contextvars.ContextVar("neonpro_identity", default=None)


def current_identity() -> Identity | None:
    """The identity of the innermost ``acting_as`` block, or None outside one."""
    return _current.get()


def _apply(identity: Identity, using: str, binding: Binding | None = None) -> Binding | None:
    connection = connections[using]
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        return set_identity(cursor, identity, binding)


@contextmanager
def acting_as(identity: Identity, *, using: str = DEFAULT_DB_ALIAS) -> Iterator[Identity]:
    """Run the block in a transaction whose database identity is ``identity``.

    Nested blocks switch identity for their duration (a savepoint) and restore the outer
    one afterwards, both in the database and in the ORM.
    """
    outer = _current.get()
    token = _current.set(identity)
    try:
        with transaction.atomic(using=using):
            binding = _apply(identity, using)
            try:
                yield identity
            finally:
                # set_config(..., true) outlives a released savepoint: hand the enclosing
                # transaction back the identity it had (none, if it had none), signed for
                # the same transaction.
                if connections[using].in_atomic_block and not connections[using].needs_rollback:
                    _apply(outer or ANONYMOUS, using, binding)
    finally:
        _current.reset(token)


@contextmanager
def system_context(reason: str, *, using: str = DEFAULT_DB_ALIAS) -> Iterator[Identity]:
    """Act as the system (full access) — for seeding, registration, maintenance jobs.

    ``reason`` is mandatory so every use is deliberate and can be audited by the caller.
    """
    if not reason or not reason.strip():
        raise ValueError("system_context needs a reason")
    with acting_as(SYSTEM, using=using) as identity:
        yield identity


def identity_for_user(user: Any, *, using: str = DEFAULT_DB_ALIAS) -> Identity:
    """The identity of an authenticated user (ANONYMOUS for anyone else).

    A patient user's own Patient id is looked up under their identity (RLS lets a patient
    see the Patient row linked to their account), then carried as ``neonpro.patient_id``.
    An agent carries the scopes its credential was checked for (``AGENT_SCOPES`` on the
    user, set by the API's token or certificate check); without one it has none.
    """
    if user is None or not getattr(user, "is_authenticated", False) or not user.is_active:
        return ANONYMOUS
    role = user.role if user.role in ROLES and user.role != "system" else ""
    if role == "agent":
        return Identity(user_id=user.pk, role=role, scopes=tuple(map(scopes.claim, getattr(user, AGENT_SCOPES, ()))))
    identity = Identity(user_id=user.pk, role=role)
    if role == "patient":
        from patients.services import patient_id_for_user

        with acting_as(identity, using=using):
            identity = Identity(user_id=user.pk, role=role, patient_id=patient_id_for_user(user.pk))
    return identity
