"""Agents' API tokens: issued once, stored as a prefix and a keyed hash, checked in constant time.

Guarantees:

* A token is ``npa_<prefix>_<secret>``: 12 lowercase letters that find its row (no digits, so
  the prefix is an identifier the audit log accepts) and 256 random bits (``secrets``) in hex.
  It is returned once, by ``issue_token``; nothing stores, logs or audits it.
* The row holds the prefix and ``HMAC-SHA256(token)`` under a key derived for ``LABEL`` from
  the ``identity`` MAC key of ``keys`` (``keys.crypto.sign``), with that key's id: a copy of the
  table gives no usable token, and a key rotation leaves issued tokens working (old keys verify
  until destroyed; destroying one ends the tokens hashed under it).
* ``check_token`` refuses, with a reason for the audit log only (the client gets one 401 for
  all), a malformed token, an unknown prefix or a wrong secret (alike: ``unknown``), a revoked
  or expired token, and the token of a disabled agent. The scopes it grants are the token's
  that the agent still holds.
* Last use (time and address) is written at most once per ``TOUCH_SECONDS`` per token, or when
  the address changes: a busy agent does not turn every read into a write.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.utils import timezone

from keys import crypto
from neonpro.accounts.agent_models import ApiToken
from neonpro.audit.services import record_event
from neonpro.security import scopes

KIND = "npa"
PREFIX_ALPHABET = "abcdefghijkmnopqrstuvwxyz"  # letters only ("l" left out: it reads as "1")
PREFIX_LENGTH = 12
SECRET_BYTES = 32
LABEL = b"neonpro.api-token.v1"
MAC_PURPOSE = "identity"
FORMAT = re.compile(rf"{KIND}_([{PREFIX_ALPHABET}]{{{PREFIX_LENGTH}}})_([0-9a-f]{{{2 * SECRET_BYTES}}})")
DEFAULT_EXPIRES_DAYS = 90
MAX_EXPIRES_DAYS = 365
TOUCH_SECONDS = 60
RESOURCE = "accounts.apitoken"


class TokenRefused(Exception):  # noqa: N818 - the name says what happened
    """A presented token does not authenticate; ``reason`` is for the audit log, never the client."""

    def __init__(self, reason: str, prefix: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.prefix = prefix


@dataclass(frozen=True)
class CheckedToken:
    token: ApiToken
    scopes: tuple[str, ...]


def _new_prefix() -> str:
    return "".join(secrets.choice(PREFIX_ALPHABET) for _ in range(PREFIX_LENGTH))


def issue_token(
    agent: object,
    *,
    expires_days: int = DEFAULT_EXPIRES_DAYS,
    token_scopes: Iterable[str] | None = None,
    operator: str = "",
    now: dt.datetime | None = None,
) -> tuple[ApiToken, str]:
    """A new token for ``agent`` (an active agent account), and the token itself — shown once.

    ``token_scopes`` (default: all the agent's) must be among the agent's. Raises ValueError
    naming what is wrong (not an agent, disabled, scopes, lifetime); nothing is written then.
    """
    from neonpro.accounts.agents import profile_of

    profile = profile_of(agent)
    if profile.disabled:
        raise ValueError("this agent is disabled: it gets no new tokens")
    wanted = scopes.parse(profile.scopes if token_scopes is None else token_scopes)
    beyond = [scope for scope in wanted if scope not in profile.scopes]
    if beyond:
        raise ValueError(f"the agent does not hold {', '.join(beyond)}: a token carries only the agent's scopes")
    if not 1 <= expires_days <= MAX_EXPIRES_DAYS:
        raise ValueError(f"a token lasts 1 to {MAX_EXPIRES_DAYS} days, not {expires_days}")
    now = now or timezone.now()
    for _ in range(5):  # a prefix that exists already (1 in 10^16 per try) is drawn again
        prefix = _new_prefix()
        raw = f"{KIND}_{prefix}_{secrets.token_hex(SECRET_BYTES)}"
        key_id, digest = crypto.sign(raw.encode(), purpose=MAC_PURPOSE, label=LABEL)
        try:
            with transaction.atomic():
                token = ApiToken.objects.create(
                    agent=profile.user,
                    prefix=prefix,
                    digest=digest,
                    key_id=key_id,
                    scopes=list(wanted),
                    created_by_operator=operator,
                    created_at=now,
                    expires_at=now + dt.timedelta(days=expires_days),
                )
                record_event(
                    "agent.token_issue",
                    resource_type=RESOURCE,
                    resource_id=token.pk,
                    details={
                        "agent": profile.user_id,
                        "token_prefix": prefix,
                        "scopes": list(wanted),
                        "days": expires_days,
                    },
                )
            return token, raw
        except IntegrityError:
            continue
    raise RuntimeError("could not draw an unused token prefix")  # pragma: no cover - 5 collisions in a row


def check_token(raw: str, *, now: dt.datetime | None = None) -> CheckedToken:
    """The token ``raw`` names and the scopes it grants now; raises TokenRefused."""
    match = FORMAT.fullmatch(raw)
    if match is None:
        raise TokenRefused("malformed")
    prefix = match[1]
    token = ApiToken.objects.select_related("agent", "agent__agent_profile").filter(prefix=prefix).first()
    if token is None or not crypto.verify_signature(
        raw.encode(), bytes(token.digest), purpose=MAC_PURPOSE, label=LABEL, key_id=token.key_id
    ):
        raise TokenRefused("unknown", prefix)
    now = now or timezone.now()
    if token.revoked_at is not None:
        raise TokenRefused("revoked", prefix)
    if token.expires_at <= now:
        raise TokenRefused("expired", prefix)
    agent = token.agent
    profile = getattr(agent, "agent_profile", None)
    if not agent.is_active or agent.role != "agent" or profile is None or profile.disabled:
        raise TokenRefused("disabled", prefix)
    return CheckedToken(token, tuple(scope for scope in token.scopes if scope in profile.scopes))


def touch_token(token: ApiToken, *, ip: str | None, now: dt.datetime | None = None) -> None:
    """Record the token's last use (throttled: see the module docstring)."""
    now = now or timezone.now()
    recent = token.last_used_at is not None and now - token.last_used_at < dt.timedelta(seconds=TOUCH_SECONDS)
    if recent and token.last_used_ip == ip:
        return
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=now, last_used_ip=ip)
    token.last_used_at, token.last_used_ip = now, ip


def revoke_token(prefix: str, *, now: dt.datetime | None = None) -> ApiToken:
    """Revoke the token with ``prefix`` (audited); ``npa_<prefix>`` and the whole token name it
    too. Raises ValueError for an unknown prefix and for a token revoked already."""
    match = re.match(rf"(?:{KIND}_)?([{PREFIX_ALPHABET}]{{{PREFIX_LENGTH}}})(?:_|$)", prefix.strip())
    with transaction.atomic():
        token = ApiToken.objects.select_for_update().filter(prefix=match[1] if match else None).first()
        if token is None:
            raise ValueError(f"no API token has that prefix ({PREFIX_LENGTH} letters, as `agents list` shows)")
        if token.revoked_at is not None:
            raise ValueError(f"token {token.prefix} was revoked already, at {token.revoked_at:%Y-%m-%d %H:%M} UTC")
        token.revoked_at = now or timezone.now()
        token.save(update_fields=["revoked_at"])
        record_event(
            "agent.token_revoke",
            resource_type=RESOURCE,
            resource_id=token.pk,
            details={"agent": token.agent_id, "token_prefix": token.prefix},
        )
    return token
