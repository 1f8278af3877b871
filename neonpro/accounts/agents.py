"""Agent accounts: creating, finding and disabling the machine identities that call the API.

An agent is a ``User`` with role ``agent``, no usable password (it never signs in with one:
it presents an API token or a client certificate, ``neonpro.accounts.agent_auth``) and an
``AgentProfile`` with its scopes. Which patients it reaches is the patients app's part
(``patients.agents``), which creates the account through ``create_agent_account`` in the
same transaction. Every change is audited; the account's own writes are audited as every
account change is (``neonpro.accounts.signals``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from neonpro.accounts.agent_models import AgentProfile, ApiToken
from neonpro.audit.services import record_event
from neonpro.security import scopes

RESOURCE = "accounts.user"


def profile_of(agent: Any) -> AgentProfile:
    """The profile of an agent account; ValueError for any other account."""
    profile = AgentProfile.objects.select_related("user").filter(user_id=getattr(agent, "pk", agent)).first()
    if profile is None or profile.user.role != "agent":
        raise ValueError("not an agent account")
    return profile


def agent_named(name: str) -> Any:
    """The agent account called ``name``; ValueError (naming it: agents' names are not PHI) if none."""
    user = get_user_model().objects.filter(username=name, role="agent").first()
    if user is None:
        raise ValueError(f"no agent is called {name!r}")
    return user


def create_agent_account(
    name: str, *, agent_scopes: Any, description: str = "", operator: str = "", created_by: Any = None
) -> AgentProfile:
    """A new agent account with its profile (audited); the caller owns the transaction.

    Raises ValueError for unknown or inconsistent scopes (``neonpro.security.scopes.parse``),
    a name in use, or a name Django refuses as a username.
    """
    chosen = scopes.parse(agent_scopes)
    users = get_user_model()
    if users.objects.filter(username=name).exists():
        raise ValueError(f"the name {name!r} is taken: choose another")
    user = users(username=name, role="agent")
    user.set_unusable_password()
    try:
        user.full_clean(exclude=["password"])
    except ValidationError as exc:
        problems = (f"{field}: {' '.join(errors)}" for field, errors in exc.message_dict.items())
        raise ValueError("; ".join(problems)) from None
    user.save()
    profile = AgentProfile.objects.create(
        user=user, scopes=list(chosen), description=description, created_by_operator=operator, created_by=created_by
    )
    record_event("agent.create", resource_type=RESOURCE, resource_id=user.pk, details={"scopes": list(chosen)})
    return profile


def disable_agent(agent: Any, *, now: dt.datetime | None = None) -> AgentProfile:
    """Disable an agent (audited): its account is deactivated, so no token or certificate of it
    authenticates any more, and its tokens are revoked. Raises ValueError if disabled already."""
    profile = profile_of(agent)
    if profile.disabled:
        raise ValueError("this agent is disabled already")
    now = now or timezone.now()
    with transaction.atomic():
        profile.disabled_at = now
        profile.save(update_fields=["disabled_at"])
        profile.user.is_active = False
        profile.user.save(update_fields=["is_active"])
        revoked = ApiToken.objects.filter(agent=profile.user, revoked_at__isnull=True).update(revoked_at=now)
        record_event(
            "agent.disable", resource_type=RESOURCE, resource_id=profile.user_id, details={"tokens_revoked": revoked}
        )
    return profile
