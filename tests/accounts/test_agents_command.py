"""``manage.py agents ...`` as an operator types it: clear errors, nothing half-created, all audited."""

from __future__ import annotations

import datetime as dt
import io
import re
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from neonpro.accounts.agent_models import AgentCertificate, AgentProfile, ApiToken
from neonpro.accounts.models import User
from neonpro.audit.models import AuditEvent
from neonpro.security.context import system_context
from patients.models import AgentAccess
from tests.accounts.agentkit import fingerprint, make_ca, pem

pytestmark = pytest.mark.django_db


def agents(*args: str) -> str:
    out = io.StringIO()
    call_command("agents", *args, "--operator", "ops.jane", "--reason", "setup", stdout=out)
    return out.getvalue()


def _access(name: str) -> list[tuple[Any, Any]]:
    with system_context("test"):
        return sorted(
            AgentAccess.objects.filter(agent__username=name).values_list("patient_id", "care_team_of__username"),
            key=str,
        )


def test_create_with_patients_by_id_and_mrn_and_a_care_team(world: Any) -> None:
    out = agents(
        "create", "scheduler", "--scopes", "patients:read,appointments:read,appointments:write",
        "--patients", f"{world.alice.pk}, {world.bob.mrn},{world.alice.pk}", "--care-team-of", "dr.care",
        "--description", "books follow-ups",
    )  # fmt: skip

    agent = User.objects.get(username="scheduler")
    assert agent.role == "agent" and not agent.has_usable_password()
    profile = AgentProfile.objects.get(user=agent)
    assert profile.scopes == ["patients:read", "appointments:read", "appointments:write"]
    assert (profile.description, profile.created_by_operator) == ("books follow-ups", "ops.jane")
    assert str(profile) == f"Agent {agent.pk}" and not profile.disabled
    assert _access("scheduler") == sorted([(world.alice.pk, None), (world.bob.pk, None), (None, "dr.care")], key=str)
    assert "Agent scheduler" in out and "for 2 patient(s) and the care team of dr.care" in out
    assert world.bob.mrn not in out
    created = AuditEvent.objects.get(action="agent.create")
    assert created.actor_role == "operator" and created.details["operator"] == "ops.jane"
    assert created.resource_id == agent.pk and created.details["scopes"] == sorted(profile.scopes)
    granted = AuditEvent.objects.get(action="agent.access_grant")
    assert sorted(granted.details["patients"]) == sorted([str(world.alice.pk), str(world.bob.pk)])
    assert granted.details["care_team_of"] == str(world.doctor.pk)
    assert world.bob.mrn not in granted.canonical().decode()


def test_create_for_a_care_team_alone(world: Any) -> None:
    agents("create", "team-bot", "--scopes", "records:read", "--care-team-of", "dr.care")
    assert _access("team-bot") == [(None, "dr.care")]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--scopes", "patients:read,records:delete", "--patients", "{alice}"], "unknown scope 'records:delete'"),
        (["--scopes", "records:write", "--patients", "{alice}"], "records:write needs records:read as well"),
        (["--scopes", " , ", "--patients", "{alice}"], "name at least one scope"),
        (["--scopes", "records:read", "--patients", "{alice},MRN-NOPE-1"], "--patients item 2: no patient has that"),
        (["--scopes", "records:read", "--patients", "00000000-0000-4000-8000-000000000000"], "item 1: no patient"),
        (["--scopes", "records:read", "--care-team-of", "dr.nobody"], "no active clinician is called 'dr.nobody'"),
        (["--scopes", "records:read", "--care-team-of", "alice"], "no active clinician is called 'alice'"),
        (["--scopes", "records:read"], "name the agent's patients (--patients) or its supervising clinician"),
        (["--scopes", "records:read", "--patients", " , "], "name the agent's patients"),
    ],
)
def test_create_refuses_clearly_and_leaves_nothing(world: Any, args: list[str], message: str) -> None:
    before = AuditEvent.objects.filter(action__startswith="agent.").count()
    with pytest.raises(CommandError, match=re.escape(message)) as refused:
        agents("create", "half-bot", *[a.replace("{alice}", str(world.alice.pk)) for a in args])
    assert "MRN-NOPE-1" not in str(refused.value)
    assert not User.objects.filter(username="half-bot").exists()
    assert not AgentProfile.objects.exists()
    assert not _access("half-bot")
    assert AuditEvent.objects.filter(action__startswith="agent.").count() == before


def test_an_mrn_two_patients_share_is_refused(world: Any, patient_factory: Any) -> None:
    patient_factory(mrn=world.alice.mrn)
    with pytest.raises(CommandError, match="item 1: more than one patient has that MRN"):
        agents("create", "mrn-bot", "--scopes", "records:read", "--patients", world.alice.mrn)


@pytest.mark.parametrize(("name", "message"), [("dr.care", "the name 'dr.care' is taken"), ("no spaces", "username")])
def test_create_refuses_a_name_in_use_or_not_a_username(world: Any, name: str, message: str) -> None:
    with pytest.raises(CommandError, match=message):
        agents("create", name, "--scopes", "records:read", "--patients", str(world.alice.pk))
    assert not AgentProfile.objects.exists()


def test_token_is_printed_once_and_list_shows_prefixes_never_tokens(world: Any) -> None:
    agents("create", "reader", "--scopes", "patients:read,records:read", "--patients", str(world.alice.pk))
    out = agents("token", "reader", "--expires-days", "7", "--scopes", "records:read")

    (raw,) = re.findall(r"npa_[a-z]{12}_[0-9a-f]{64}", out)
    token = ApiToken.objects.get()
    assert token.prefix in out and "scopes records:read" in out and "It is shown once" in out
    assert token.expires_at - token.created_at == dt.timedelta(days=7) and token.created_by_operator == "ops.jane"
    listed = agents("list")
    assert raw not in listed and "reader" in listed and "patients: 1; tokens: 1; certificates: 0" in listed
    assert AuditEvent.objects.get(action="agent.token_issue").details["operator"] == "ops.jane"
    assert raw not in "".join(e.canonical().decode() for e in AuditEvent.objects.all())


def test_token_errors_are_command_errors(world: Any) -> None:
    agents("create", "reader", "--scopes", "records:read", "--patients", str(world.alice.pk))
    with pytest.raises(CommandError, match="no agent is called 'writer'"):
        agents("token", "writer")
    with pytest.raises(CommandError, match="does not hold records:write"):
        agents("token", "reader", "--scopes", "records:read,records:write")
    with pytest.raises(CommandError, match="not 400"):
        agents("token", "reader", "--expires-days", "400")
    with pytest.raises(CommandError, match="invalid choice: 'curiosity'"):
        call_command("agents", "list", "--reason", "curiosity")


def test_list_revoke_disable(world: Any) -> None:
    assert agents("list") == "No agents.\n"
    agents("create", "worker", "--scopes", "records:read", "--care-team-of", "dr.care")
    out = agents("token", "worker")
    prefix = re.search(r"npa_([a-z]{12})_", out)[1]  # type: ignore[index]

    assert agents("revoke-token", prefix) == f"API token {prefix} revoked.\n"
    with pytest.raises(CommandError, match="was revoked already"):
        agents("revoke-token", prefix)
    assert "+ care team of dr.care; tokens: 0" in agents("list")
    agents("token", "worker")
    assert "disabled; its tokens are revoked" in agents("disable", "worker")
    assert "DISABLED" in agents("list") and not ApiToken.objects.filter(revoked_at__isnull=True).exists()
    assert not User.objects.get(username="worker").is_active
    with pytest.raises(CommandError, match="disabled already"):
        agents("disable", "worker")
    disabled = AuditEvent.objects.get(action="agent.disable")
    assert disabled.details["tokens_revoked"] == 1 and disabled.details["operator"] == "ops.jane"


def test_certificate_maps_a_pem_file_and_revoke_certificate_unmaps_it(world: Any, tmp_path: Path) -> None:
    ca = make_ca()
    certificate = ca.issue("worker.agents")
    path = tmp_path / "worker.pem"
    path.write_bytes(pem(certificate))
    agents("create", "worker", "--scopes", "records:read", "--care-team-of", "dr.care")

    out = agents("certificate", "worker", "--pem", str(path))

    assert fingerprint(certificate) in out and "CN=worker.agents" in out and "now identifies worker" in out
    assert AgentCertificate.objects.get().created_by_operator == "ops.jane"
    assert "certificates: 1" in agents("list")
    with pytest.raises(CommandError, match="registered already"):
        agents("certificate", "worker", "--pem", str(path))
    with pytest.raises(CommandError, match="No such file"):
        agents("certificate", "worker", "--pem", str(tmp_path / "missing.pem"))
    assert agents("revoke-certificate", fingerprint(certificate)).endswith("revoked.\n")
    assert "certificates: 0" in agents("list")
