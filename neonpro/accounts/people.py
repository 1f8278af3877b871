"""How people are named in the API: a clinician by their account's full name.

A clinician's display name is not PHI (patients, colleagues and agents see who treats whom),
so it is read from the accounts table directly. Only clinicians are named here: an id that is
not a clinician's (a patient's account, an administrator's, the system's) has no
display name, so this never reveals anyone else's name.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from neonpro.accounts.models import User


def display_name(user: Any) -> str:
    """The user's full name, or their username when the account has no name."""
    return str(user.get_full_name().strip() or user.username)


def clinician_names(ids: Iterable[uuid.UUID | None]) -> dict[uuid.UUID, str]:
    """Display names of the clinicians among ``ids`` (one query; others are left out)."""
    wanted = {pk for pk in ids if pk is not None}
    if not wanted:
        return {}
    clinicians = User.objects.filter(pk__in=wanted, role=User.Role.CLINICIAN).only(
        "id", "username", "first_name", "last_name"
    )
    return {user.pk: display_name(user) for user in clinicians}
