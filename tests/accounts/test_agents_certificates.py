"""Agents' client certificates (neonpro/accounts/agent_certificates.py), with certificates made here."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.utils import timezone

from neonpro.accounts import agent_certificates, agents
from neonpro.accounts.agent_models import AgentCertificate
from neonpro.audit.models import AuditEvent
from tests.accounts.agentkit import fingerprint, make_agent, make_ca, pem

pytestmark = pytest.mark.django_db


@pytest.fixture
def ca() -> Any:
    return make_ca()


@pytest.fixture
def agent(world: Any) -> Any:
    return make_agent("lab-importer", ("records:read", "records:write"), patients=[world.alice])


def test_a_registered_certificate_identifies_its_agent_by_fingerprint(ca: Any, agent: Any) -> None:
    certificate = ca.issue("lab-importer.agents.neonpro")

    row = agent_certificates.register_certificate(agent, pem(certificate), operator="ops.jane")

    assert row.fingerprint == fingerprint(certificate) == agent_certificates.fingerprint_of(certificate)
    assert row.subject == "CN=lab-importer.agents.neonpro" and row.serial == format(certificate.serial_number, "x")
    assert row.created_by_operator == "ops.jane" and str(row) == f"Agent certificate {row.fingerprint[:16]}"
    checked = agent_certificates.check_certificate(pem(certificate))
    assert checked.certificate == row and checked.scopes == ("records:read", "records:write")
    event = AuditEvent.objects.get(action="agent.certificate_add")
    assert event.details == {"agent": str(agent.pk), "fingerprint": row.fingerprint}


def test_a_certificate_without_basic_constraints_is_a_client_certificate(ca: Any, agent: Any) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "plain")]))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(ca.key, hashes.SHA256())
    )

    assert agent_certificates.register_certificate(agent, pem(certificate)).serial == "7"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda ca: pem(ca.certificate), "this is a CA certificate"),
        (lambda ca: pem(ca.issue("sub-ca", ca=True)), "this is a CA certificate"),
        (lambda ca: pem(ca.issue("old", not_before=timezone.now() - dt.timedelta(days=40))), "not now"),
        (lambda ca: pem(ca.issue("soon", not_before=timezone.now() + dt.timedelta(days=1))), "not now"),
        (lambda ca: b"-----BEGIN CERTIFICATE-----\nnonsense\n-----END CERTIFICATE-----\n", "not a PEM certificate"),
        (lambda ca: b"", "not a PEM certificate"),
    ],
)
def test_what_cannot_identify_an_agent_is_not_registered(ca: Any, agent: Any, make: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        agent_certificates.register_certificate(agent, make(ca))
    assert not AgentCertificate.objects.exists()


def test_a_certificate_identifies_one_agent_only(ca: Any, agent: Any, world: Any) -> None:
    certificate = pem(ca.issue("shared"))
    other = make_agent("other-bot", ("records:read",), patients=[world.bob])
    agent_certificates.register_certificate(agent, certificate)

    with pytest.raises(ValueError, match="is registered already"):
        agent_certificates.register_certificate(other, certificate)
    with pytest.raises(ValueError, match="not an agent account"):
        agent_certificates.register_certificate(world.doctor, pem(ca.issue("doctor")))


def test_unknown_revoked_expired_and_disabled_certificates_are_refused(ca: Any, agent: Any, world: Any) -> None:
    unknown, registered = ca.issue("unknown"), ca.issue("registered", days=2)
    row = agent_certificates.register_certificate(agent, pem(registered))

    def reason(certificate: bytes, **options: Any) -> tuple[str, str | None]:
        with pytest.raises(agent_certificates.CertificateRefused) as refused:
            agent_certificates.check_certificate(certificate, **options)
        return refused.value.reason, refused.value.fingerprint

    assert reason(b"garbage") == ("malformed", None)
    assert reason(pem(unknown)) == ("unknown", fingerprint(unknown))
    later = timezone.now() + dt.timedelta(days=3)
    assert reason(pem(registered), now=later) == ("expired", row.fingerprint)
    agents.disable_agent(agent)
    assert reason(pem(registered)) == ("disabled", row.fingerprint)
    agent_certificates.revoke_certificate(row.fingerprint)
    assert reason(pem(registered)) == ("revoked", row.fingerprint)


def test_revoking_takes_the_fingerprint_as_openssl_prints_it_and_is_audited(ca: Any, agent: Any) -> None:
    row = agent_certificates.register_certificate(agent, pem(ca.issue("to-revoke")))
    spelled = ":".join(row.fingerprint[i : i + 2] for i in range(0, 64, 2)).upper()

    agent_certificates.revoke_certificate(f" {spelled} ")

    assert AgentCertificate.objects.get(pk=row.pk).revoked_at is not None
    event = AuditEvent.objects.get(action="agent.certificate_revoke")
    assert event.details == {"agent": str(agent.pk), "fingerprint": row.fingerprint}
    with pytest.raises(ValueError, match="was revoked already"):
        agent_certificates.revoke_certificate(row.fingerprint)
    with pytest.raises(ValueError, match="no registered certificate has that SHA-256 fingerprint"):
        agent_certificates.revoke_certificate("00" * 32)
