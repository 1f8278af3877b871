"""Agents in the admin (neonpro/accounts/agent_admin.py): an administrator lists agents, disables
them and revokes their credentials, through the audited services; no token or digest is ever shown."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from neonpro.accounts import agent_certificates, agent_tokens
from neonpro.accounts.agent_models import AgentCertificate, AgentProfile, ApiToken
from neonpro.accounts.services import ensure_administrators_group
from neonpro.audit.models import AuditEvent
from tests.accounts.agentkit import make_agent, make_ca, pem
from tests.conftest import sign_in_as

pytestmark = pytest.mark.django_db


@pytest.fixture
def administrator(world: Any) -> Client:
    world.admin.groups.add(ensure_administrators_group())
    return sign_in_as(Client(), world.admin)  # the admin requires a session verified by a second factor


@pytest.fixture
def bot(world: Any) -> Any:
    return make_agent("admin-bot", ("records:read",), patients=[world.alice])


def test_the_lists_and_pages_show_references_never_tokens(administrator: Client, bot: Any) -> None:
    token, raw = agent_tokens.issue_token(bot)
    revoked, _ = agent_tokens.issue_token(bot)
    agent_tokens.revoke_token(revoked.prefix)
    certificate = agent_certificates.register_certificate(bot, pem(make_ca().issue("admin-bot")))
    profile = AgentProfile.objects.get(user=bot)

    pages = [
        "/admin/accounts/agentprofile/",
        f"/admin/accounts/agentprofile/{profile.pk}/change/",
        "/admin/accounts/apitoken/",
        f"/admin/accounts/apitoken/{token.pk}/change/",
        "/admin/accounts/agentcertificate/",
        f"/admin/accounts/agentcertificate/{certificate.pk}/change/",
    ]
    for page in pages:
        answer = administrator.get(page, secure=True)
        assert answer.status_code == 200, page
        html = answer.content.decode()
        assert raw not in html and raw.split("_")[2] not in html and bytes(token.digest).hex() not in html, page
    detail = administrator.get(pages[1], secure=True).content.decode()
    assert f"{token.prefix}: expires" in detail and f"{revoked.prefix}: revoked" in detail
    assert f"{certificate.fingerprint}: expires" in detail
    assert administrator.get("/admin/accounts/apitoken/add/", secure=True).status_code == 403
    assert administrator.get(f"/admin/accounts/apitoken/{token.pk}/delete/", secure=True).status_code == 403


def test_an_agent_without_credentials_shows_none(administrator: Client, bot: Any) -> None:
    profile = AgentProfile.objects.get(user=bot)
    page = administrator.get(f"/admin/accounts/agentprofile/{profile.pk}/change/", secure=True)
    assert page.content.decode().count(">none<") == 2


def _act(client: Client, model: str, action: str, pks: list[Any]) -> str:
    answer = client.post(
        f"/admin/accounts/{model}/",
        {"action": action, "_selected_action": [str(pk) for pk in pks]},
        secure=True,
        follow=True,
    )
    assert answer.status_code == 200
    return answer.content.decode()


def test_administrators_disable_agents_and_revoke_tokens_and_certificates(
    administrator: Client, bot: Any, world: Any
) -> None:
    token, _ = agent_tokens.issue_token(bot)
    certificate = agent_certificates.register_certificate(bot, pem(make_ca().issue("admin-bot")))
    other, _ = agent_tokens.issue_token(bot)

    assert "1 token(s) revoked" in _act(administrator, "apitoken", "revoke", [token.pk])
    again = _act(administrator, "apitoken", "revoke", [token.pk])
    assert "was revoked already" in again and "0 token(s) revoked" in again
    assert "1 certificate(s) revoked" in _act(administrator, "agentcertificate", "revoke", [certificate.pk])
    profile = AgentProfile.objects.get(user=bot)
    assert "1 agent(s) disabled" in _act(administrator, "agentprofile", "disable", [profile.pk])

    assert ApiToken.objects.get(pk=other.pk).revoked_at is not None, "disabling revokes the rest"
    assert AgentCertificate.objects.get(pk=certificate.pk).revoked_at is not None
    assert AgentProfile.objects.get(pk=profile.pk).disabled
    for action in ("agent.token_revoke", "agent.certificate_revoke", "agent.disable"):
        event = AuditEvent.objects.filter(action=action).latest("id")
        assert (event.actor_id, event.actor_role) == (world.admin.pk, "admin"), action


def test_an_agent_is_never_given_a_password(world: Any, bot: Any) -> None:
    from django.core.exceptions import PermissionDenied

    from neonpro.accounts.services import issue_temporary_password

    world.admin.groups.add(ensure_administrators_group())
    world.admin.refresh_from_db()
    with pytest.raises(PermissionDenied, match="Agents have no password"):
        issue_temporary_password(world.admin, bot, actor_password="correct horse battery staple")
    bot.refresh_from_db()
    assert not bot.has_usable_password()
