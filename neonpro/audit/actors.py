"""How administrators' pages name the actor of an audit event: by username, never a patient's.

An event stores its actor as an account id. The admin and the security dashboard show the
account's username instead, except for patients: who is a patient is not the
administrators' to know (``User.__str__`` keeps to the same rule), so a patient's account
is named only as such. Looking events up by username follows the same rule: a patient's
username finds nothing, exactly like a name no account has.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from neonpro.accounts.models import User
from neonpro.audit.services import SYSTEM_ACTOR_ID

NOBODY = "anonymous"
SYSTEM = "system"
PATIENT = "a patient's portal account"


def actor_labels(ids: Iterable[uuid.UUID | None]) -> dict[uuid.UUID | None, str]:
    """A label for each of ``ids`` (one query): a username, ``system``, ``anonymous`` (no
    actor: a failed sign-in), a patient's account as such, or the id itself when no account
    has it."""
    wanted = set(ids)
    labels: dict[uuid.UUID | None, str] = {None: NOBODY, SYSTEM_ACTOR_ID: SYSTEM}
    accounts = User.objects.filter(pk__in={pk for pk in wanted if pk not in labels}).values_list(
        "pk", "username", "role"
    )
    for pk, username, role in accounts:
        labels[pk] = PATIENT if role == User.Role.PATIENT else username
    return {pk: labels.get(pk, str(pk)) for pk in wanted}


def actor_id_for_username(username: str) -> uuid.UUID | None:
    """The id of the account named ``username`` (exactly), unless it is a patient's."""
    return User.objects.filter(username=username).exclude(role=User.Role.PATIENT).values_list("pk", flat=True).first()
