"""Agents' API tokens (neonpro/accounts/agent_tokens.py): format, storage, checks, revocation."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from django.utils import timezone

from keys import crypto
from neonpro.accounts import agent_tokens, agents
from neonpro.accounts.agent_models import ApiToken
from neonpro.audit.models import AuditEvent
from neonpro.security.context import system_context
from tests.accounts.agentkit import make_agent, token_for

pytestmark = pytest.mark.django_db
READ = ("patients:read", "records:read")


@pytest.fixture
def agent(world: Any) -> Any:
    return make_agent("triage-bot", (*READ, "records:write"), patients=[world.alice])


def test_a_token_is_npa_prefix_secret_and_only_its_keyed_hash_is_stored(agent: Any) -> None:
    token, raw = agent_tokens.issue_token(agent)

    assert re.fullmatch(r"npa_[a-km-z]{12}_[0-9a-f]{64}", raw)
    assert raw.split("_")[1] == token.prefix and "l" not in token.prefix
    row = ApiToken.objects.get(pk=token.pk)
    assert bytes(row.digest) != raw.encode() and len(bytes(row.digest)) == 32
    assert raw.split("_")[2] not in repr(row.__dict__)
    assert crypto.verify_signature(
        raw.encode(), bytes(row.digest), purpose="identity", label=agent_tokens.LABEL, key_id=row.key_id
    )
    assert str(row) == f"API token {row.prefix}"
    assert row.scopes == ["patients:read", "records:read", "records:write"]
    assert row.expires_at - timezone.now() > dt.timedelta(days=89, hours=23)
    event = AuditEvent.objects.get(action="agent.token_issue")
    assert event.resource_id == token.pk and event.details["token_prefix"] == token.prefix
    assert raw not in event.canonical().decode() and raw.split("_")[2] not in str(event.details)


def test_check_token_gives_the_token_and_its_scopes(agent: Any) -> None:
    token, raw = agent_tokens.issue_token(agent, token_scopes=["records:read"], expires_days=1)

    checked = agent_tokens.check_token(raw)

    assert checked.token.pk == token.pk and checked.scopes == ("records:read",)
    assert checked.token.agent == agent


def test_the_scopes_of_a_token_are_those_its_agent_still_holds(agent: Any) -> None:
    raw = token_for(agent)
    profile = agents.profile_of(agent)
    profile.scopes = ["records:read"]
    profile.save()

    assert agent_tokens.check_token(raw).scopes == ("records:read",)


@pytest.mark.parametrize(
    "presented",
    ["", "npa_", "npa_abcdefghijkm", "npb_abcdefghijkm_" + "0" * 64, "npa_ABCDEFGHIJKM_" + "0" * 64,
     "npa_abcdefghijkl_" + "0" * 64, "npa_abcdefghijkm_" + "0" * 63, "npa_abcdefghijkm_" + "0" * 64 + "\n"],
)  # fmt: skip
def test_a_malformed_token_is_refused_as_malformed(presented: str) -> None:
    with pytest.raises(agent_tokens.TokenRefused) as refused:
        agent_tokens.check_token(presented)
    assert refused.value.reason == "malformed" and refused.value.prefix is None


def test_an_unknown_prefix_and_a_wrong_secret_are_the_same_refusal(agent: Any) -> None:
    raw = token_for(agent)
    prefix = raw.split("_")[1]
    wrong_secret = f"npa_{prefix}_" + "0" * 64
    unknown = "npa_abcdefghijkm_" + raw.split("_")[2]

    for presented, reported in ((wrong_secret, prefix), (unknown, "abcdefghijkm")):
        with pytest.raises(agent_tokens.TokenRefused) as refused:
            agent_tokens.check_token(presented)
        assert (refused.value.reason, refused.value.prefix) == ("unknown", reported)


def test_a_digest_under_a_key_that_is_no_more_refuses_the_token(agent: Any) -> None:
    token, raw = agent_tokens.issue_token(agent)
    ApiToken.objects.filter(pk=token.pk).update(key_id=999_999)

    with pytest.raises(agent_tokens.TokenRefused, match="unknown"):
        agent_tokens.check_token(raw)


def test_revoked_and_expired_tokens_are_refused_with_their_reason(agent: Any) -> None:
    token, raw = agent_tokens.issue_token(agent, expires_days=2)

    with pytest.raises(agent_tokens.TokenRefused, match="expired"):
        agent_tokens.check_token(raw, now=timezone.now() + dt.timedelta(days=2, seconds=1))
    agent_tokens.check_token(raw, now=timezone.now() + dt.timedelta(days=1))
    agent_tokens.revoke_token(token.prefix)
    with pytest.raises(agent_tokens.TokenRefused, match="revoked"):
        agent_tokens.check_token(raw)


def test_a_disabled_agents_token_is_refused_and_it_gets_no_new_one(agent: Any) -> None:
    raw = token_for(agent)
    agents.disable_agent(agent)
    assert ApiToken.objects.get(agent=agent).revoked_at is not None, "disabling revokes its tokens"
    ApiToken.objects.filter(agent=agent).update(revoked_at=None)  # and were one not revoked, still refused

    with pytest.raises(agent_tokens.TokenRefused, match="disabled"):
        agent_tokens.check_token(raw)
    with pytest.raises(ValueError, match="this agent is disabled"):
        agent_tokens.issue_token(agent)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"token_scopes": ["appointments:read"]}, "the agent does not hold appointments:read"),
        ({"token_scopes": ["records:write"]}, "records:write needs records:read"),
        ({"token_scopes": ["records:delete"]}, "unknown scope 'records:delete'"),
        ({"token_scopes": []}, "name at least one scope"),
        ({"expires_days": 0}, "a token lasts 1 to 365 days, not 0"),
        ({"expires_days": 366}, "not 366"),
    ],
)
def test_a_token_beyond_the_agents_scopes_or_lifetime_is_refused(agent: Any, options: Any, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        agent_tokens.issue_token(agent, **options)
    assert not ApiToken.objects.exists()


def test_only_agents_get_tokens(world: Any) -> None:
    with pytest.raises(ValueError, match="not an agent account"):
        agent_tokens.issue_token(world.doctor)


def test_a_prefix_in_use_is_drawn_again(agent: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    first, _ = agent_tokens.issue_token(agent)
    draws = iter([first.prefix, "bcdefghijkmn"])
    monkeypatch.setattr(agent_tokens, "_new_prefix", lambda: next(draws))

    second, raw = agent_tokens.issue_token(agent)

    assert second.prefix == "bcdefghijkmn" and agent_tokens.check_token(raw).token == second


def test_last_use_is_written_at_most_once_a_minute_per_address(agent: Any) -> None:
    token, _ = agent_tokens.issue_token(agent)
    start = timezone.now()

    def stored() -> tuple[Any, Any]:
        row = ApiToken.objects.get(pk=token.pk)
        return row.last_used_at, row.last_used_ip

    agent_tokens.touch_token(token, ip="10.0.0.7", now=start)
    assert stored() == (start, "10.0.0.7")
    agent_tokens.touch_token(token, ip="10.0.0.7", now=start + dt.timedelta(seconds=59))
    assert stored() == (start, "10.0.0.7"), "throttled"
    agent_tokens.touch_token(token, ip="10.0.0.8", now=start + dt.timedelta(seconds=59))
    assert stored() == (start + dt.timedelta(seconds=59), "10.0.0.8"), "another address"
    later = start + dt.timedelta(seconds=120)
    agent_tokens.touch_token(token, ip="10.0.0.8", now=later)
    assert stored() == (later, "10.0.0.8")


@pytest.mark.parametrize("how", ["prefix", "npa_prefix", "whole"])
def test_revoke_takes_the_prefix_or_the_token_and_is_audited(agent: Any, how: str) -> None:
    token, raw = agent_tokens.issue_token(agent)
    named = {"prefix": token.prefix, "npa_prefix": f"npa_{token.prefix}", "whole": raw}[how]

    revoked = agent_tokens.revoke_token(f" {named} ")

    assert revoked.pk == token.pk and ApiToken.objects.get(pk=token.pk).revoked_at is not None
    event = AuditEvent.objects.get(action="agent.token_revoke")
    assert event.details == {"agent": str(agent.pk), "token_prefix": token.prefix}
    with pytest.raises(ValueError, match="was revoked already"):
        agent_tokens.revoke_token(token.prefix)


@pytest.mark.parametrize("named", ["abcdefghijkm", "npa_", "short", "npa_abcdefghijkmnop"])
def test_revoking_an_unknown_prefix_says_so(agent: Any, named: str) -> None:
    agent_tokens.issue_token(agent)
    with pytest.raises(ValueError, match="no API token has that prefix"):
        agent_tokens.revoke_token(named)


def test_usable_tokens_are_the_unrevoked_unexpired_ones(agent: Any) -> None:
    live, _ = agent_tokens.issue_token(agent)
    gone, _ = agent_tokens.issue_token(agent)
    agent_tokens.revoke_token(gone.prefix)
    now = timezone.now()

    assert list(ApiToken.objects.usable(now)) == [live]
    assert live.is_usable(now) and not ApiToken.objects.get(pk=gone.pk).is_usable(now)
    assert not live.is_usable(now + dt.timedelta(days=91))
    with system_context("count"):
        assert list(ApiToken.objects.usable(now + dt.timedelta(days=91))) == []
